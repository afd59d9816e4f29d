"""Putting jobs on the django-rq queue.

Jobs are nudges, not the truth: if Redis is unreachable the row stays as it is in the
database and the reconciler queues it again later. So a failed enqueue is logged, never
raised into a web request that has already committed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

import django_rq
from redis.exceptions import RedisError
from rq import Queue

from imagen_assets import conf

logger = logging.getLogger(__name__)

#: Job ids of reconcile runs start with this; each run has its own id.
RECONCILE_JOB_PREFIX = "imagen_assets-reconcile-"
#: Redis key naming the reconcile run that is due next.
RECONCILE_NEXT_KEY = "imagen_assets:reconcile:next"


def get_queue() -> Queue:
    # "auto": we decide when to enqueue (always after commit, via transaction.on_commit).
    return django_rq.get_queue(conf.get("QUEUE"), commit_mode="auto")


def enqueue(
    func: Callable[..., Any],
    *args: Any,
    delay: float | None = None,
    job_id: str | None = None,
) -> bool:
    """Queue ``func(*args)`` now or after ``delay`` seconds. False if Redis refused it."""
    options: dict[str, Any] = {"job_id": job_id} if job_id else {}
    try:
        queue = get_queue()
        if delay and delay > 0:
            queue.enqueue_in(timedelta(seconds=delay), func, *args, **options)
        else:
            queue.enqueue(func, *args, **options)
    except RedisError as exc:
        logger.error(
            "Could not queue %s%r (%s); the reconciler will pick it up.",
            getattr(func, "__name__", func),
            args,
            type(exc).__name__,
        )
        return False
    return True


def enqueue_submits(task_ids: Iterable[int]) -> None:
    from imagen_assets import jobs

    for task_id in task_ids:
        enqueue(jobs.submit, task_id)
