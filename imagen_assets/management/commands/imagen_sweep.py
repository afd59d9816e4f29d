"""``manage.py imagen_sweep``: delete the image files no row owns (what dead runs left)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from imagen_assets import conf, orphans
from imagen_assets.management import cli
from imagen_assets.orphans import Action

MESSAGES = {
    Action.DELETED: gettext_lazy("Deleted %(name)s (no image owns it)."),
    Action.WOULD_DELETE: gettext_lazy("Would delete %(name)s (no image owns it)."),
    Action.OWNED: gettext_lazy("Kept %(name)s: image #%(image)s owns it."),
}


class Command(BaseCommand):
    help = (
        "Delete the image files that no image owns (left by a worker that died while "
        "storing, or that could not clean up), once their record is older than "
        "ORPHAN_GRACE seconds, or sooner once the RQ job that wrote them is over. Works "
        "from the names recorded before each write, never by listing the storage: exports "
        "and other files are never touched. Exits 1 when a file could not be deleted (it is "
        "tried again next time)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help=_("Say what would be deleted; change nothing."),
        )
        parser.add_argument(
            "--json", action="store_true", help=_("Print one JSON object per line.")
        )

    def handle(self, *args: Any, **options: Any) -> None:
        results = cli.Results(self, as_json=options["json"])
        counts = dict.fromkeys(Action, 0)
        for swept in orphans.sweep(dry_run=options["dry_run"]):
            counts[swept.action] += 1
            key = {"name": swept.name}
            data = {
                "kind": swept.kind,
                "image": swept.image_id,
                "recorded_at": swept.recorded_at.isoformat(),
                "action": swept.action.value,
            }
            values = {"name": swept.name, "image": swept.image_id}
            if swept.action is Action.FAILED:
                results.refused(
                    {**key, **data},
                    _("Could not delete %(name)s from storage; it will be tried again.") % values,
                )
            else:
                results.done(key, str(MESSAGES[swept.action] % values), **data)
        if not options["json"]:
            grace = conf.get("ORPHAN_GRACE")
            if options["dry_run"]:
                summary = _(
                    "Dry run: %(would)d orphan file(s) would be deleted, %(owned)d record(s) "
                    "of owned files dropped (records older than %(grace)s s)."
                )
            else:
                summary = _(
                    "%(deleted)d orphan file(s) deleted, %(owned)d record(s) of owned files "
                    "dropped, %(failed)d could not be deleted (records older than %(grace)s s)."
                )
            self.stdout.write(
                summary
                % {
                    "would": counts[Action.WOULD_DELETE],
                    "deleted": counts[Action.DELETED],
                    "owned": counts[Action.OWNED],
                    "failed": counts[Action.FAILED],
                    "grace": grace,
                }
            )
        results.finish()
