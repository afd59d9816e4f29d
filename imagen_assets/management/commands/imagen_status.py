"""``manage.py imagen_status``: the per-image view of what exists, reviews included."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from imagen_assets import breaker, services
from imagen_assets.explain import explain
from imagen_assets.management.spend_report import print_spend
from imagen_assets.models import Campaign, GeneratedImage
from imagen_assets.status import ImageStatus, TaskStatus


def status_word(image: GeneratedImage) -> str:
    """The status column: each outcome apart ("withheld" is never "failed"), and
    "storing" for an image whose provider is done but whose file is not stored yet."""
    if image.is_open and image.task.status == TaskStatus.SUCCEEDED:
        return "storing"
    if image.status == ImageStatus.FILTERED:
        return "withheld"
    return str(image.status)


class Command(BaseCommand):
    help = gettext_noop(
        "Show every generated image (optionally of one campaign) with its status and reviews."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.description = _(self.help)  # marked above, translated when shown
        parser.add_argument("--campaign", help=_("Campaign slug."))
        parser.add_argument(
            "--json",
            action="store_true",
            help=_("One JSON object per image, with every review decision."),
        )
        parser.add_argument(
            "--spend",
            metavar="SLUG",
            help=_(
                "Instead of images, print the campaign's spend by day, provider and person, "
                "estimated against charged (--json: one object per row)."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["spend"]:
            print_spend(self, options["spend"], as_json=options["json"])
            return
        # Providers not answering or refusing the API key, on stderr: why images wait or
        # fail, without changing what stdout (and --json) prints.
        for _level, sentence in breaker.alert_texts():
            self.stderr.write(sentence)
        images = GeneratedImage.objects.order_by("campaign_id", "task_id", "index")
        campaign = None
        if options["campaign"]:
            campaign = Campaign.objects.filter(slug=options["campaign"]).first()
            if campaign is None:
                raise CommandError(
                    _("There is no campaign %(slug)r.") % {"slug": options["campaign"]}
                )
            images = images.filter(campaign=campaign)
        # Chunks keep memory flat on a large site; each costs two queries (images, decisions).
        for image in services.for_summary(images).iterator(chunk_size=500):
            summary = services.image_summary(image)
            explanation = explain(image)
            # What happened in plain words (admin's words too); "error" keeps the raw ones.
            summary["outcome"] = (
                {
                    "kind": str(explanation.kind),
                    "title": explanation.title,
                    "advice": explanation.advice,
                    "charge": explanation.charge,
                }
                if explanation is not None
                else None
            )
            if campaign is not None:
                summary["campaign_status"] = image.campaign.status
            if options["json"]:
                self.stdout.write(json.dumps(summary))
            else:
                size = f"{summary['width']}x{summary['height']}" if summary["width"] else "-"
                approvals = f"{summary['approvals']}/{image.campaign.required_approvals}"
                said = summary["file"] or summary["error"] or ""
                if explanation is not None:
                    said = f"{explanation.title}: {explanation.advice} {explanation.charge}"
                self.stdout.write(
                    f"#{summary['id']:<6} {summary['campaign']:<20} {status_word(image):<10} "
                    f"{summary['review_status']:<9} {approvals:<5} "
                    f"{summary['provider']:<10} {size:<10} "
                    f"{said.strip()}"
                )
