"""``manage.py imagen_status``: the per-image view of what exists."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from imagen_assets import services
from imagen_assets.models import Campaign, GeneratedImage


class Command(BaseCommand):
    help = "Show every generated image (optionally of one campaign) with its status."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--campaign", help="Campaign slug.")
        parser.add_argument("--json", action="store_true", help="One JSON object per image.")

    def handle(self, *args: Any, **options: Any) -> None:
        images = GeneratedImage.objects.select_related("task", "campaign").order_by(
            "campaign_id", "task_id", "index"
        )
        if options["campaign"]:
            if not Campaign.objects.filter(slug=options["campaign"]).exists():
                raise CommandError(f"No campaign {options['campaign']!r}.")
            images = images.filter(campaign__slug=options["campaign"])
        for image in images.iterator(chunk_size=500):
            summary = services.image_summary(image)
            if options["json"]:
                self.stdout.write(json.dumps(summary))
            else:
                size = f"{summary['width']}x{summary['height']}" if summary["width"] else "-"
                self.stdout.write(
                    f"#{summary['id']:<6} {summary['campaign']:<20} {summary['status']:<10} "
                    f"{summary['review_status']:<9} {summary['provider']:<10} {size:<10} "
                    f"{summary['file'] or summary['error'] or ''}"
                )
