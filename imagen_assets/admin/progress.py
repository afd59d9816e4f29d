"""Per-image truth for the admin: a request's "3 of 8 ready", and the campaign summary's
counts, each outcome apart (ready, in progress, failed, withheld, cancelled, pending review),
each a link to the images list filtered to exactly the images it counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.utils.translation import gettext, ngettext

from imagen_assets import capacity
from imagen_assets.admin.base import images_changelist_url
from imagen_assets.models import GeneratedImage, GenerationRequest
from imagen_assets.providers import provider_display_name
from imagen_assets.status import OPEN_IMAGE_STATUSES, ImageStatus, ReviewStatus

#: The newest requests shown on a campaign's page.
RECENT_REQUESTS = 5


def _counts(prefix: str) -> dict[str, Any]:
    """Count annotations over the images reached through ``prefix`` (``tasks__images``)."""

    def count(**filters: Any) -> Count:
        return Count(
            f"{prefix}",
            filter=Q(**{f"{prefix}__{key}": value for key, value in filters.items()}),
        )

    return {
        "n_images": Count(prefix),
        "n_ready": count(status=ImageStatus.SUCCEEDED),
        "n_open": count(status__in=OPEN_IMAGE_STATUSES),
        "n_failed": count(status=ImageStatus.FAILED),
        "n_withheld": count(status=ImageStatus.FILTERED),
        "n_cancelled": count(status=ImageStatus.CANCELLED),
    }


@dataclass
class RequestProgress:
    """One request's images, counted by outcome."""

    request: GenerationRequest
    total: int
    ready: int
    open: int
    failed: int
    withheld: int
    cancelled: int
    url: str = field(default="")

    @property
    def label(self) -> str:
        """ "3 of 8 ready" """
        return ready_label(self.ready, self.total)

    @property
    def percent(self) -> int:
        return round(100 * self.ready / self.total) if self.total else 0

    @property
    def finished(self) -> bool:
        return self.open == 0

    @property
    def others(self) -> list[str]:
        """ "1 failed", "2 withheld", "1 cancelled", "5 in progress": the rest, apart."""
        parts = []
        if self.open:
            parts.append(gettext("%(count)d in progress") % {"count": self.open})
        if self.failed:
            parts.append(gettext("%(count)d failed") % {"count": self.failed})
        if self.withheld:
            parts.append(gettext("%(count)d withheld") % {"count": self.withheld})
        if self.cancelled:
            parts.append(gettext("%(count)d cancelled") % {"count": self.cancelled})
        return parts


def request_rows(requests: QuerySet[GenerationRequest]) -> list[RequestProgress]:
    """Each request of ``requests`` with its counts: one query for any number of them."""
    rows = requests.annotate(**_counts("tasks__images"))
    return [
        RequestProgress(
            request=row,
            total=row.n_images,  # type: ignore[attr-defined]
            ready=row.n_ready,  # type: ignore[attr-defined]
            open=row.n_open,  # type: ignore[attr-defined]
            failed=row.n_failed,  # type: ignore[attr-defined]
            withheld=row.n_withheld,  # type: ignore[attr-defined]
            cancelled=row.n_cancelled,  # type: ignore[attr-defined]
            url=images_changelist_url(task__request=row.pk),  # the list's request filter
        )
        for row in rows
    ]


def request_progress(image: GeneratedImage) -> RequestProgress | None:
    """The progress of the request that made ``image``; None for an image made before
    requests were kept."""
    request_id = image.task.request_id
    if request_id is None:
        return None
    rows = request_rows(GenerationRequest.objects.filter(pk=request_id))
    return rows[0] if rows else None


def recent_requests(campaign_id: int) -> list[RequestProgress]:
    """The campaign's newest requests with their counts."""
    newest = GenerationRequest.objects.filter(campaign_id=campaign_id).order_by(
        "-created_at", "-pk"
    )[:RECENT_REQUESTS]
    # Counting over a sliced queryset is not allowed: the slice's ids first (one query).
    ids = list(newest.values_list("pk", flat=True))
    if not ids:
        return []
    return request_rows(
        GenerationRequest.objects.filter(pk__in=ids)
        .select_related("requested_by")
        .order_by("-created_at", "-pk")
    )


@dataclass(frozen=True)
class Figure:
    """One figure of the campaign summary: what it counts, how many, and its list."""

    key: str
    label: str
    count: int
    url: str
    #: "problem" (red when not zero), "neutral" (grey), or "" (plain).
    tone: str = ""


def summary_counts(campaign_id: int, stats: Any) -> list[Figure]:
    """The campaign summary's figures from ``with_stats()``'s annotations; each links to
    the images list filtered to exactly what it counts (the filter and the count agree)."""

    def url(**filters: Any) -> str:
        return images_changelist_url(campaign__id__exact=campaign_id, **filters)

    return [
        Figure("total", gettext("images"), stats.n_images, url()),
        Figure("ready", gettext("ready"), stats.n_ready, url(status__exact=ImageStatus.SUCCEEDED)),
        Figure(
            "pending",
            gettext("pending review"),
            stats.n_pending,
            url(review_status__exact=ReviewStatus.PENDING),
        ),
        Figure(
            "approved",
            gettext("approved"),
            stats.n_approved,
            url(review_status__exact=ReviewStatus.APPROVED),
        ),
        Figure("open", gettext("in progress"), stats.n_open, url(status__in="queued,processing")),
        Figure(
            "failed",
            gettext("failed"),
            stats.n_failed,
            url(status__exact=ImageStatus.FAILED),
            "problem",
        ),
        Figure(
            "withheld",
            gettext("withheld by provider"),
            stats.n_withheld,
            url(status__exact=ImageStatus.FILTERED),
            "neutral",
        ),
        Figure(
            "cancelled",
            gettext("cancelled"),
            stats.n_cancelled,
            url(status__exact=ImageStatus.CANCELLED),
            "neutral",
        ),
    ]


def ready_label(ready: int, total: int) -> str:
    """ "3 of 8 ready": the one wording of a request's progress (lists, grid, pages)."""
    return ngettext("%(ready)d of %(total)d ready", "%(ready)d of %(total)d ready", total) % {
        "ready": ready,
        "total": total,
    }


@dataclass(frozen=True)
class ProviderQueue:
    """A capped provider's tasks: "12 running, 188 waiting for the provider"."""

    alias: str
    name: str
    running: int
    waiting: int
    cap: int


def provider_queues(campaign_id: int) -> list[ProviderQueue]:
    """The capped providers this campaign has tasks waiting for, with their counts across
    every campaign (the cap is the account's, :mod:`imagen_assets.capacity`)."""
    aliases = (
        capacity.waiting_tasks_anywhere()
        .filter(campaign_id=campaign_id)
        .values_list("provider", flat=True)
        .distinct()
    )
    queues = []
    for alias in sorted(set(aliases)):
        cap = capacity.cap_of(alias)
        if cap is None:
            continue
        running, waiting = capacity.counts(alias)
        queues.append(ProviderQueue(alias, provider_display_name(alias), running, waiting, cap))
    return queues
