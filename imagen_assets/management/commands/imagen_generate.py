"""``manage.py imagen_generate``: the command-line twin of the admin's "Generate images"."""

from __future__ import annotations

import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.text import slugify

from imagen_assets import services
from imagen_assets.models import Campaign, GeneratedImage


class Command(BaseCommand):
    help = (
        "Queue images for a campaign (created if missing). With --wait, wait until every "
        "image is finished and exit non-zero if any failed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--campaign", required=True, help="Campaign slug.")
        parser.add_argument("--prompt", required=True)
        parser.add_argument("--provider", help="Provider alias (default: the site's default).")
        parser.add_argument("--count", type=int, default=1)
        parser.add_argument("--aspect-ratio", help="1:1, 3:4, 4:3, 9:16 or 16:9.")
        parser.add_argument("--seed", type=int)
        parser.add_argument("--negative-prompt")
        parser.add_argument("--wait", action="store_true", help="Wait for the images.")
        parser.add_argument("--timeout", type=float, default=600.0, help="Seconds to wait.")
        parser.add_argument("--json", action="store_true", help="One JSON object per image.")

    def handle(self, *args: Any, **options: Any) -> None:
        slug = slugify(options["campaign"])
        if not slug:
            raise CommandError("--campaign must contain letters or digits.")
        campaign, created = Campaign.objects.get_or_create(
            slug=slug, defaults={"name": options["campaign"]}
        )
        if created and not options["json"]:
            self.stdout.write(f"Created campaign {slug!r}.")
        try:
            tasks = services.request_images(
                campaign=campaign,
                prompt=options["prompt"],
                count=options["count"],
                aspect_ratio=options["aspect_ratio"],
                provider=options["provider"],
                seed=options["seed"],
                negative_prompt=options["negative_prompt"],
            )
        except services.GenerationRequestError as exc:
            raise CommandError(str(exc)) from exc
        images = GeneratedImage.objects.filter(task__in=tasks)
        if not options["json"]:
            self.stdout.write(
                f"Queued {options['count']} image(s) in {len(tasks)} task(s) "
                f"on {tasks[0].provider}."
            )
        if options["wait"]:
            deadline = time.monotonic() + options["timeout"]
            while images.unfinished().exists():
                if time.monotonic() > deadline:
                    self._report(images, options["json"])
                    raise CommandError(
                        f"Gave up waiting after {options['timeout']:g} s; "
                        "is a worker running (manage.py rqworker --with-scheduler)?"
                    )
                time.sleep(0.25)
        self._report(images, options["json"])
        if options["wait"]:
            Status = GeneratedImage.Status
            withheld = images.filter(status=Status.FILTERED).count()
            if withheld:
                # Not a failure: the provider's safety filter kept them back (not charged).
                self.stderr.write(f"{withheld} image(s) withheld by the provider's safety filter.")
            failed = images.filter(status__in=[Status.FAILED, Status.CANCELLED]).count()
            if failed:
                raise CommandError(f"{failed} image(s) did not succeed (failed or cancelled).")

    def _report(self, images: Any, as_json: bool) -> None:
        for image in images.select_related("task", "campaign").order_by("task_id", "index"):
            summary = services.image_summary(image)
            if as_json:
                self.stdout.write(json.dumps(summary))
            else:
                size = f"{summary['width']}x{summary['height']}" if summary["width"] else "-"
                self.stdout.write(
                    f"#{summary['id']:<6} {summary['status']:<10} {summary['provider']:<10} "
                    f"{size:<10} {summary['file'] or summary['error'] or ''}"
                )
