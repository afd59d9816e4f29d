"""What a campaign spent, by day, provider and person: estimated against charged.

Every figure is summed in the database (``GROUP BY``), so a report costs the same few
queries for ten tasks or a hundred thousand. A task counts as the budget counts it
(:func:`imagen_assets.models.task_spend`): a failed or cancelled one counts nothing.

- **estimated**: the price quoted when the images were asked for (tasks that delivered or
  are still working);
- **charged**: what the provider billed for the tasks that finished;
- **reserved**: the estimate of the tasks still working (charged once they finish);
- **committed**: charged plus reserved, what the campaign's budget counts.

Days are the site's ``TIME_ZONE`` days, the ones the quotas reset on.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Case, Count, DecimalField, F, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from imagen_assets.models import MONEY, Campaign, GenerationTask, counted_tasks, task_spend
from imagen_assets.providers import provider_display_name
from imagen_assets.status import OPEN_TASK_STATUSES, TaskStatus

ZERO = Decimal(0)


@dataclass(frozen=True)
class SpendRow:
    """The sums of one group of tasks (a day, a provider, a person)."""

    key: Any
    tasks: int = 0
    images: int = 0
    estimated: Decimal = ZERO
    charged: Decimal = ZERO
    reserved: Decimal = ZERO
    committed: Decimal = ZERO
    label: str = ""

    @property
    def difference(self) -> Decimal:
        """Charged minus the estimate of the tasks that finished (positive: billed more)."""
        return self.charged - (self.estimated - self.reserved)


@dataclass(frozen=True)
class CampaignSpend:
    """A campaign's spend report: per day (oldest first), per provider and per person
    (largest first), and the totals."""

    campaign: Campaign
    by_day: list[SpendRow] = field(default_factory=list)
    by_provider: list[SpendRow] = field(default_factory=list)
    by_user: list[SpendRow] = field(default_factory=list)

    @property
    def total(self) -> SpendRow:
        return sum_rows(self.by_provider, key="total")

    @property
    def empty(self) -> bool:
        return not self.by_provider


def sum_rows(rows: list[SpendRow], *, key: Any) -> SpendRow:
    return SpendRow(
        key=key,
        tasks=sum(row.tasks for row in rows),
        images=sum(row.images for row in rows),
        estimated=sum((row.estimated for row in rows), ZERO),
        charged=sum((row.charged for row in rows), ZERO),
        reserved=sum((row.reserved for row in rows), ZERO),
        committed=sum((row.committed for row in rows), ZERO),
    )


def _sums() -> dict[str, Any]:
    money = DecimalField(max_digits=MONEY.max_digits, decimal_places=MONEY.decimal_places)
    return {
        "tasks": Count("pk"),
        "images": Sum("num_images"),
        "estimated": Sum("estimated_cost", output_field=money),
        "charged": Sum(
            Case(
                When(status=TaskStatus.SUCCEEDED, then=Coalesce(F("cost"), Value(ZERO))),
                default=Value(ZERO),
                output_field=money,
            )
        ),
        "reserved": Sum("estimated_cost", filter=Q(status__in=OPEN_TASK_STATUSES)),
        "committed": Sum(task_spend()),
    }


def _row(key: Any, values: Mapping[str, Any], label: str = "") -> SpendRow:
    return SpendRow(
        key=key,
        tasks=values["tasks"] or 0,
        images=values["images"] or 0,
        estimated=values["estimated"] or ZERO,
        charged=values["charged"] or ZERO,
        reserved=values["reserved"] or ZERO,
        committed=values["committed"] or ZERO,
        label=label,
    )


def campaign_tasks(campaign: Campaign) -> QuerySet[GenerationTask]:
    """The campaign's tasks that count (delivered, still working, or cancelled but maybe
    billed: :func:`~imagen_assets.models.counted_tasks`), unordered."""
    return GenerationTask.objects.filter(counted_tasks(), campaign=campaign).order_by()


def by_day(campaign: Campaign) -> list[SpendRow]:
    """One row per site day on which tasks were asked for, oldest first. One query."""
    day = TruncDate("created_at", tzinfo=timezone.get_default_timezone())
    rows = (
        campaign_tasks(campaign).annotate(day=day).values("day").annotate(**_sums()).order_by("day")
    )
    return [_row(values["day"], values) for values in rows]


def by_provider(campaign: Campaign) -> list[SpendRow]:
    """One row per provider, most committed first. One query."""
    rows = campaign_tasks(campaign).values("provider").annotate(**_sums())
    result = [
        _row(values["provider"], values, provider_display_name(values["provider"]))
        for values in rows
    ]
    return sorted(result, key=lambda row: (-row.committed, row.label))


def by_user(campaign: Campaign, *, nobody: str = "") -> list[SpendRow]:
    """One row per person who asked, most committed first; tasks without one (a host's
    code, a deleted user) under ``nobody``. Two queries (the sums, then the names)."""
    rows = list(campaign_tasks(campaign).values("requested_by").annotate(**_sums()))
    ids = [values["requested_by"] for values in rows if values["requested_by"] is not None]
    user_model = get_user_model()
    names = {
        user.pk: user.get_username()
        for user in user_model._default_manager.filter(pk__in=ids).only(
            "pk", user_model.USERNAME_FIELD
        )
    }
    result = [
        _row(
            values["requested_by"],
            values,
            names.get(values["requested_by"], nobody) if values["requested_by"] else nobody,
        )
        for values in rows
    ]
    return sorted(result, key=lambda row: (-row.committed, row.label))


def campaign_spend(campaign: Campaign, *, nobody: str = "") -> CampaignSpend:
    """The whole report: four queries, whatever the number of tasks."""
    return CampaignSpend(
        campaign=campaign,
        by_day=by_day(campaign),
        by_provider=by_provider(campaign),
        by_user=by_user(campaign, nobody=nobody),
    )


def chart_days(rows: list[SpendRow], *, days: int) -> list[SpendRow]:
    """The ``days`` days ending on the last one with spend, every day present (a day
    without tasks as a zero row), oldest first; empty without any spend."""
    if not rows:
        return []
    by_key = {row.key: row for row in rows}
    last: dt.date = rows[-1].key
    first: dt.date = max(rows[0].key, last - dt.timedelta(days=days - 1))
    days_shown = [first + dt.timedelta(days=offset) for offset in range((last - first).days + 1)]
    return [by_key.get(day, SpendRow(key=day)) for day in days_shown]
