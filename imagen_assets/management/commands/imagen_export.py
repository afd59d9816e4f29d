"""``manage.py imagen_export``: the command-line twin of "Download approved images"."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils.translation import gettext as _

from imagen_assets import activity, exports, review
from imagen_assets.activity import Actor, Verb
from imagen_assets.models import Campaign


class Command(BaseCommand):
    help = (
        "Write a zip of a campaign's approved images (the stored files, byte for byte) with "
        "manifest.csv and manifest.json to PATH, here and now (no worker needed). Exits 1 "
        "when nothing is approved."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="Campaign slug.")
        parser.add_argument("--out", required=True, help="Path of the zip to write.")
        parser.add_argument(
            "--user",
            help="Act as this user (who must hold the export permission); the export is "
            "logged under their name. Without it, it is logged as 'system'.",
        )
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = self.export(options["slug"], Path(options["out"]), options["user"])
        except (review.ReviewError, exports.ExportFailed) as exc:
            if options["json"]:
                self.stdout.write(json.dumps({"ok": False, "error": str(exc)}))
            raise CommandError(str(exc), returncode=1) from exc
        if options["json"]:
            self.stdout.write(json.dumps({"ok": True, **result}))
        else:
            self.stdout.write(
                f"Wrote {result['images']} approved image(s) of {result['campaign']} to "
                f"{result['file']} ({result['bytes']} bytes)."
            )

    def export(self, slug: str, out: Path, username: str | None) -> dict[str, Any]:
        """Write the zip to ``out`` (whole or not at all) and log the export."""
        campaign = Campaign.objects.filter(slug=slug).first()
        if campaign is None:
            raise review.ReviewError(_("There is no campaign %(slug)r.") % {"slug": slug})
        actor = Actor()
        if username:
            user = get_user_model().objects.filter(username=username).first()
            if user is None:
                raise review.ReviewError(_("There is no user %(name)r.") % {"name": username})
            actor = Actor.of(user)
            review.require(
                actor, exports.PERM_EXPORT, _("download the approved images of campaigns")
            )
        images = exports.exportable_images(campaign)
        out = out.expanduser().resolve()
        if not out.parent.is_dir():
            raise review.ReviewError(_("There is no folder %(path)s.") % {"path": out.parent})
        # Written beside the target and renamed into place: a failed export leaves no
        # half-written zip under the name asked for.
        handle, partial = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
        try:
            with os.fdopen(handle, "wb") as stream:
                exports.write_zip(campaign, images, stream)
                size = stream.tell()
            os.replace(partial, out)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
        with transaction.atomic():
            activity.record(
                campaign,
                Verb.EXPORTED,
                actor,
                note=_("%(count)d approved image(s), from the command line")
                % {"count": len(images)},
            )
        return {"campaign": campaign.slug, "file": str(out), "images": len(images), "bytes": size}
