"""The campaign page's spend section: a bar chart drawn on the server as SVG (no script, no
chart library) and small tables by day, provider and person, from
:mod:`imagen_assets.spending`.

The chart's bars are placed in percent of its width, so it fills any width from a phone's
390 px to a desktop without scaling its text; heights are in pixels.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext

from imagen_assets import spending
from imagen_assets.models import Campaign
from imagen_assets.money import dollars
from imagen_assets.spending import SpendRow

#: The most days the chart shows: those ending on the last day with spend.
CHART_DAYS = 30
#: Fewest bar slots: a campaign of one or two days gets bars of a sensible width, centred.
MIN_SLOTS = 7
PLOT_TOP = 18
PLOT_HEIGHT = 160
HEIGHT = PLOT_TOP + PLOT_HEIGHT + 24
#: Shortest bar drawn for an amount above zero, so that a cent still shows.
MIN_BAR = 2.0


def nice_ceiling(value: Decimal) -> Decimal:
    """The smallest of 1, 2, 2.5 or 5 times a power of ten at least ``value`` (the chart's
    top line); 1 for nothing."""
    if value <= 0:
        return Decimal(1)
    power = Decimal(10) ** math.floor(math.log10(value))
    for step in ("1", "2", "2.5", "5", "10"):
        top = Decimal(step) * power
        if top >= value:
            return top
    return Decimal(10) * power  # pragma: no cover (10 x power is always enough)


def _pct(value: float) -> str:
    return f"{value:.3f}%"


def _px(value: float) -> str:
    return f"{value:.1f}"


def _bar(amount: Decimal, top: Decimal, x: float, width: float) -> dict[str, str]:
    height = float(amount / top) * PLOT_HEIGHT if amount > 0 else 0.0
    if amount > 0:
        height = max(height, MIN_BAR)
    return {
        "x": _pct(x),
        "width": _pct(width),
        "y": _px(PLOT_TOP + PLOT_HEIGHT - height),
        "height": _px(height),
    }


def chart(rows: list[SpendRow]) -> dict[str, Any] | None:
    """What the SVG template draws for ``rows`` (one per day, no gaps), or None without any.

    Two bars a day, estimated then charged; grid lines at half and the whole of a round top
    amount, labelled on the left; the first, middle and last days under the bars.
    """
    if not rows:
        return None
    peak = max(max(row.estimated, row.charged) for row in rows)
    top = nice_ceiling(peak)
    slots = max(len(rows), MIN_SLOTS)
    slot = 100.0 / slots
    start = (slots - len(rows)) / 2 * slot
    bars = []
    for position, row in enumerate(rows):
        left = start + position * slot
        day = date_format(row.key, "SHORT_DATE_FORMAT")
        bars.append(
            {
                "row": row,
                "estimated": _bar(row.estimated, top, left + slot * 0.12, slot * 0.36),
                "charged": _bar(row.charged, top, left + slot * 0.52, slot * 0.36),
                "estimated_title": gettext("%(day)s: estimated %(amount)s")
                % {"day": day, "amount": dollars(row.estimated)},
                "charged_title": gettext("%(day)s: charged %(amount)s")
                % {"day": day, "amount": dollars(row.charged)},
            }
        )
    grid = [
        {"y": _px(PLOT_TOP + PLOT_HEIGHT * (1 - share)), "label": dollars(top * Decimal(share))}
        for share in (0.5, 1.0)
    ]
    baseline = _px(PLOT_TOP + PLOT_HEIGHT)
    labels_at = sorted({0, len(rows) // 2, len(rows) - 1}) if len(rows) >= 5 else [0]
    if len(rows) > 1 and len(rows) < 5:
        labels_at = [0, len(rows) - 1]
    labels = []
    for position in labels_at:
        left = start + position * slot
        if len(rows) == 1:
            anchor, x = "middle", left + slot / 2
        elif position == 0:
            anchor, x = "start", left
        elif position == len(rows) - 1:
            anchor, x = "end", left + slot
        else:
            anchor, x = "middle", left + slot / 2
        labels.append({"x": _pct(x), "anchor": anchor, "day": rows[position].key})
    busiest = max(rows, key=lambda row: (row.charged, row.estimated))
    return {
        "height": HEIGHT,
        "baseline": baseline,
        "label_y": _px(HEIGHT - 6),
        "grid": grid,
        "bars": bars,
        "labels": labels,
        "first": rows[0].key,
        "last": rows[-1].key,
        "busiest": busiest,
        "estimated": sum((row.estimated for row in rows), Decimal(0)),
        "charged": sum((row.charged for row in rows), Decimal(0)),
    }


def spend_section(campaign: Campaign) -> SafeString:
    """The campaign page's spend section, rendered (four queries, whatever the tasks)."""
    report = spending.campaign_spend(campaign, nobody=gettext("(nobody recorded)"))
    days = spending.chart_days(report.by_day, days=CHART_DAYS)
    context = {
        "report": report,
        "total": report.total,
        "chart": chart(days),
        "days": [row for row in days if row.tasks],
        "chart_days": CHART_DAYS,
        "time_zone": timezone.get_default_timezone_name(),
    }
    html = render_to_string("imagen_assets/admin/includes/spend_report.html", context)
    return mark_safe(html.strip())  # noqa: S308 (autoescaped template output, only stripped)
