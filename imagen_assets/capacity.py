"""A provider's concurrency cap (``OPTIONS["MAX_CONCURRENCY"]``), shared by every worker.

WaveSpeed's account levels allow a fixed number of tasks in progress at once (docs/providers.md:
Bronze 2, Silver 300); one more is answered 429. With a cap, a large batch waits its turn
instead of collecting 429s: a submit goes only while fewer than the cap are in flight, and
each task that leaves flight lets the oldest waiting ones go (:func:`waiting_to_send`).

**In flight** is counted in the database, the source of truth: tasks sent and not yet seen
finished (``submitted``, ``processing``) and tasks whose submit call is under way (a queued
task with ``submit_started_at``). The check and the start of the call are one transaction
holding the provider's :class:`~imagen_assets.models.ProviderHealth` row lock, so two
workers cannot both take the last slot. Redis leases (a counter or a sorted set with
expiries) would save that lock but need healing: Redis restarted empty forgets every lease
while the provider still runs the tasks, and a worker killed mid-call leaks one until it
expires. The count needs neither; it is one indexed count per submit, under a lock held
for a count and one update.

A task the provider has finished but nobody has read yet still counts: the cap is never
exceeded, and the reads due when a task is expected to be done (:mod:`imagen_assets.latency`)
keep that lag short. Waiting tasks have no job; a task leaving flight wakes them (oldest
first), and the reconciler does for any whose wake was lost.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import datetime

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from imagen_assets import lifecycle
from imagen_assets.models import GenerationTask, ProviderHealth
from imagen_assets.providers import get_provider
from imagen_assets.status import IN_FLIGHT_TASK_STATUSES, TaskStatus


class Start(enum.Enum):
    STARTED = "started"
    #: The task is no longer queued under this claim (cancelled meanwhile): send nothing.
    GONE = "gone"
    #: The provider has ``cap`` tasks in flight: the task waits.
    FULL = "full"


def cap_of(alias: str) -> int | None:
    """The provider's ``MAX_CONCURRENCY``, or None when it has none (no cap)."""
    try:
        return get_provider(alias).max_concurrency
    except ImproperlyConfigured:  # an unknown or broken provider has no cap to keep
        return None


def in_flight_tasks(alias: str) -> QuerySet[GenerationTask]:
    return GenerationTask.objects.filter(provider=alias).filter(
        Q(status__in=IN_FLIGHT_TASK_STATUSES)
        | Q(status=TaskStatus.QUEUED, submit_started_at__isnull=False)
    )


def waiting_tasks_anywhere() -> QuerySet[GenerationTask]:
    """Queued tasks of any provider not sent yet and not being sent."""
    return GenerationTask.objects.filter(
        status=TaskStatus.QUEUED, provider_task_id="", submit_started_at=None
    )


def waiting_tasks(alias: str) -> QuerySet[GenerationTask]:
    """``alias``'s queued tasks not sent yet and not being sent."""
    return waiting_tasks_anywhere().filter(provider=alias)


def _lock(alias: str) -> None:
    """Take the provider's row lock, which every check of its slots takes (see the module
    doc); call inside a transaction."""
    ProviderHealth.objects.select_for_update().get_or_create(provider=alias)


def start_submit(
    task_id: int,
    lease: datetime,
    alias: str,
    cap: int | None,
    waiting: Callable[[int], str],
) -> tuple[Start, int]:
    """Mark the submit of ``task_id`` (claimed with ``lease``) as under way, if the provider
    has a slot for it; with the number of its other tasks in flight (0 without a cap).

    When it has none, the claim is given back in the same transaction, the task noting
    ``waiting(running)``, so a slot freed meanwhile finds it waiting (:func:`waiting_to_send`
    takes the same lock). A task whose earlier attempt was cut short mid-call is counted in
    flight already and is sent again without a slot of its own (its provider's idempotency
    key makes it the same task there)."""
    if cap is None:
        started = lifecycle.mark_submit_started(task_id, lease)
        return (Start.STARTED if started else Start.GONE), 0
    with transaction.atomic():
        _lock(alias)
        resent = GenerationTask.objects.filter(pk=task_id, submit_started_at__isnull=False).exists()
        running = in_flight_tasks(alias).exclude(pk=task_id).count()
        if running >= cap and not resent:
            lifecycle.wait_for_slot(task_id, lease, waiting(running))
            return Start.FULL, running
        started = lifecycle.mark_submit_started(task_id, lease)
        return (Start.STARTED if started else Start.GONE), running


def waiting_to_send(alias: str) -> list[int]:
    """The oldest waiting tasks of ``alias`` that fit in its free slots now (none without a
    cap: every task has its own job then)."""
    cap = cap_of(alias)
    if cap is None:
        return []
    with transaction.atomic():
        _lock(alias)  # after a refused submit has given its claim back, not before
        free = cap - in_flight_tasks(alias).count()
        if free <= 0:
            return []
        now = timezone.now()
        ready = waiting_tasks(alias).filter(  # not held for a retry, not being claimed
            Q(submit_lease_until__isnull=True) | Q(submit_lease_until__lt=now)
        )
        return list(ready.order_by("pk").values_list("pk", flat=True)[:free])


def counts(alias: str) -> tuple[int, int]:
    """(in flight, waiting) for ``alias``: "12 running, 188 waiting for the provider"."""
    return in_flight_tasks(alias).count(), waiting_tasks(alias).count()
