"""When to read a task's status: learned from how long the provider has been taking.

A provider task takes about as long as the last ones of the same provider and model did, so
the first status read is due when the task is expected to be done, not at a fixed interval
that misses it by seconds (docs/design.md, "Polling"):

- **Expected duration**: the median of the last :data:`SAMPLES` succeeded tasks of the same
  provider and model (submitted to seen done), read from the database, the source of truth,
  with one indexed query; ``POLL_EXPECTED_SECONDS`` until there are :data:`MIN_SAMPLES`.
- **First read** at 0.9 x expected: a read that finds the task done before its time teaches
  the median that the provider got faster; one that finds it running costs one more read.
- **Then** every ``POLL_INTERVAL`` seconds while the task is about due, backing off the
  later it is: the next read is ``POLL_BACKOFF - 1`` times the time it is overdue away (with
  1.5, reads at 2, 4, 8 ... s late), at most ``POLL_MAX_INTERVAL``.
- **The provider's own hint**: a task reporting progress (Wave does) is read when its
  progress says it will be done.

A webhook-completed task records the exact duration; a polled one at most one interval more,
so the median follows the provider within a few tasks either way.
"""

from __future__ import annotations

import statistics
from datetime import datetime

from django.utils import timezone

from imagen_assets import conf
from imagen_assets.models import GenerationTask
from imagen_assets.status import TaskStatus

#: How many recent tasks the expected duration is the median of.
SAMPLES = 20
#: Fewer than this many and the default (``POLL_EXPECTED_SECONDS``) is used.
MIN_SAMPLES = 3
#: The first read is due at this share of the expected duration.
FIRST_READ_SHARE = 0.9


def expected_seconds(provider: str, model: str) -> float:
    """The median seconds the last :data:`SAMPLES` succeeded tasks of ``provider`` and
    ``model`` took from submit to done; ``POLL_EXPECTED_SECONDS`` without enough of them."""
    rows = (
        GenerationTask.objects.filter(
            provider=provider,
            model=model,
            status=TaskStatus.SUCCEEDED,
            completed_at__isnull=False,
            submitted_at__isnull=False,
        )
        .order_by("-completed_at")
        .values_list("submitted_at", "completed_at")[:SAMPLES]
    )
    durations = [(done - sent).total_seconds() for sent, done in rows if sent is not None and done]
    durations = [seconds for seconds in durations if seconds >= 0]
    if len(durations) < MIN_SAMPLES:
        return float(conf.get("POLL_EXPECTED_SECONDS"))
    return float(statistics.median(durations))


def first_read(expected: float) -> float:
    """Seconds after the submit until the first status read."""
    return max(float(conf.get("POLL_INTERVAL")), FIRST_READ_SHARE * expected)


def next_read(
    submitted_at: datetime | None,
    expected: float,
    progress: int | None = None,
    now: datetime | None = None,
) -> float:
    """Seconds until the next status read of a task that is still running, submitted at
    ``submitted_at`` and expected to take ``expected`` seconds in all; ``progress`` (0-100)
    when the provider says how far along it is."""
    interval = float(conf.get("POLL_INTERVAL"))
    longest = float(conf.get("POLL_MAX_INTERVAL"))
    if submitted_at is None:
        return interval
    elapsed = ((now or timezone.now()) - submitted_at).total_seconds()
    if progress and 0 < progress < 100 and elapsed > 0:
        # The provider's own estimate: done when the rest goes as fast as the start did.
        left = elapsed * (100 - progress) / progress
        return min(max(left, interval), longest)
    if elapsed < FIRST_READ_SHARE * expected:
        return min(max(FIRST_READ_SHARE * expected - elapsed, interval), longest)
    overdue = max(0.0, elapsed - expected)
    return min(max((float(conf.get("POLL_BACKOFF")) - 1) * overdue, interval), longest)
