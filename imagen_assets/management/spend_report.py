"""``imagen_status --spend SLUG``: the campaign page's spend tables as text or JSON lines."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.translation import gettext as _

from imagen_assets import spending
from imagen_assets.models import Campaign
from imagen_assets.money import dollars
from imagen_assets.spending import SpendRow

AMOUNTS = ("estimated", "charged", "reserved", "committed")


def _json_row(table: str, row: SpendRow, key: Any) -> dict[str, Any]:
    """Exact amounts (strings with the stored four decimals), for scripts."""
    return {
        "table": table,
        "key": key,
        "label": row.label or None,
        "tasks": row.tasks,
        "images": row.images,
        **{name: f"{getattr(row, name):.4f}" for name in AMOUNTS},
    }


def _table(title: str, first: str, rows: list[tuple[str, SpendRow]]) -> list[str]:
    headings = [first, _("Images"), _("Estimated"), _("Charged"), _("Still running")]
    cells = [
        [
            label,
            str(row.images),
            dollars(row.estimated),
            dollars(row.charged),
            dollars(row.reserved),
        ]
        for label, row in rows
    ]
    widths = [max(len(line[i]) for line in [headings, *cells]) for i in range(len(headings))]

    def line(values: list[str]) -> str:
        first_cell = values[0].ljust(widths[0])
        rest = [value.rjust(width) for value, width in zip(values[1:], widths[1:], strict=True)]
        return "  ".join([first_cell, *rest]).rstrip()

    return ["", title, line(headings), *(line(values) for values in cells)]


def print_spend(command: BaseCommand, slug: str, *, as_json: bool) -> None:
    campaign = Campaign.objects.filter(slug=slug).first()
    if campaign is None:
        raise CommandError(_("There is no campaign %(slug)r.") % {"slug": slug})
    nobody = _("(nobody recorded)")
    report = spending.campaign_spend(campaign, nobody=nobody)
    total = report.total
    if as_json:
        rows = [
            *(_json_row("day", row, row.key.isoformat()) for row in report.by_day),
            *(_json_row("provider", row, row.key) for row in report.by_provider),
            *(_json_row("user", row, row.label if row.key else None) for row in report.by_user),
            _json_row("total", total, None),
        ]
        for row in rows:
            command.stdout.write(json.dumps(row))
        return
    zone = timezone.get_default_timezone_name()
    lines = [
        _("Spend of %(campaign)s (%(slug)s); days in %(zone)s.")
        % {"campaign": campaign, "slug": campaign.slug, "zone": zone},
        _(
            "Estimated %(estimated)s, charged %(charged)s, still running %(reserved)s; "
            "%(images)d image(s)."
        )
        % {
            "estimated": dollars(total.estimated),
            "charged": dollars(total.charged),
            "reserved": dollars(total.reserved),
            "images": total.images,
        },
    ]
    if report.empty:
        lines.append(_("Nothing spent yet: no images have been asked for."))
    else:
        lines += _table(
            _("By day"), _("Day"), [(row.key.isoformat(), row) for row in report.by_day]
        )
        lines += _table(
            _("By provider"), _("Provider"), [(row.label, row) for row in report.by_provider]
        )
        lines += _table(_("By person"), _("Asked by"), [(row.label, row) for row in report.by_user])
    for text in lines:
        command.stdout.write(text)
