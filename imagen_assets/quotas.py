"""Per-user daily quotas: the limits that apply to a user and what they used today.

The arithmetic only; :func:`imagen_assets.services.check_user_quota` applies it under a row
lock, in the transaction that creates the tasks. A day is the site's ``TIME_ZONE`` day.
What a user used is what their tasks of the day count against a budget
(:func:`imagen_assets.models.task_spend`): failed and cancelled tasks count nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from imagen_assets import conf
from imagen_assets.models import GenerationTask, UserQuota, counted_tasks, task_spend
from imagen_assets.money import dollars


@dataclass(frozen=True)
class Quota:
    """The daily limits of one user; None means no limit."""

    images: int | None = None
    spend: Decimal | None = None

    @property
    def limited(self) -> bool:
        return self.images is not None or self.spend is not None


@dataclass(frozen=True)
class Used:
    """What one user's requests of the day count: images asked for and dollars committed."""

    images: int
    spend: Decimal


def parse_images(value: Any) -> int | None:
    """``USER_DAILY_IMAGES`` as an int; ValueError when it is neither None nor a whole
    number of at least zero."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(value)
    return value


def parse_spend(value: Any) -> Decimal | None:
    """``USER_DAILY_SPEND`` as a Decimal; ValueError when it is neither None nor an amount
    of at least zero (a number or a string such as "25.00")."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise ValueError(value)
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(value) from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(value)
    return amount


def site_default() -> Quota:
    """The site's limits (``USER_DAILY_IMAGES``, ``USER_DAILY_SPEND``); an invalid value
    (system check E090/E091 reports it) raises ValueError rather than lifting the limit."""
    return Quota(
        images=parse_images(conf.get("USER_DAILY_IMAGES")),
        spend=parse_spend(conf.get("USER_DAILY_SPEND")),
    )


def quota_for(user_id: Any) -> Quota:
    """The limits that apply to the user: their override's, field by field, else the
    site's; none for a user whose override says "no daily quota". One query."""
    default = site_default()
    override = UserQuota.objects.filter(user_id=user_id).first()
    if override is None:
        return default
    if override.unlimited:
        return Quota()
    return Quota(
        images=override.images_per_day if override.images_per_day is not None else default.images,
        spend=override.spend_per_day if override.spend_per_day is not None else default.spend,
    )


def day_start(now: dt.datetime | None = None) -> dt.datetime:
    """Midnight that began today (or ``now``'s day) in the site's time zone."""
    zone = timezone.get_default_timezone()
    today = timezone.localtime(now or timezone.now(), zone).date()
    return dt.datetime.combine(today, dt.time(), tzinfo=zone)


def zone_name() -> str:
    """The site's time zone as people know it, e.g. "Europe/Paris"."""
    return timezone.get_default_timezone_name()


def used_today(user_id: Any, now: dt.datetime | None = None) -> Used:
    """The images and dollars the user's tasks created today count. One query."""
    totals = (
        GenerationTask.objects.filter(
            requested_by_id=user_id,
            created_at__gte=day_start(now),
        )
        .filter(counted_tasks())
        .aggregate(images=Sum("num_images"), spend=Sum(task_spend()))
    )
    return Used(images=totals["images"] or 0, spend=totals["spend"] or Decimal(0))


def summary(user_id: Any) -> str:
    """What the generate page says of the user's quota before they ask ("3 of your 50
    images used today. It resets at midnight (Europe/Paris)."); empty without a limit (or
    with a broken setting: the request itself then says so)."""
    if user_id is None:
        return ""
    try:
        quota = quota_for(user_id)
    except ValueError:
        return ""
    if not quota.limited:
        return ""
    used = used_today(user_id)
    parts = []
    if quota.images is not None:
        parts.append(
            ngettext(
                "%(used)d of your %(limit)d image used today.",
                "%(used)d of your %(limit)d images used today.",
                quota.images,
            )
            % {"used": used.images, "limit": quota.images}
        )
    if quota.spend is not None:
        parts.append(
            _("%(used)s of your %(limit)s daily spend used.")
            % {"used": dollars(used.spend), "limit": dollars(quota.spend)}
        )
    parts.append(_("Your quota resets at midnight (%(zone)s).") % {"zone": zone_name()})
    return " ".join(parts)
