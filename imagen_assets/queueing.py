"""The one module that talks to RQ and Redis (``worker.py``, the worker class, aside).

Jobs are nudges, not the truth: if Redis is unreachable the row stays as it is in the
database and the reconciler queues it again later. So a failed enqueue is logged, never
raised into a web request that has already committed. Jobs are named by dotted path, so
this module imports none of them.

It also keeps the reconciler's periodic run going (:func:`schedule_reconciler`) and gives
every open row its job again after Redis lost them all (:func:`restore_lost_jobs`).
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

import django_rq
from redis import ConnectionPool, Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus, get_current_job
from rq.registry import ScheduledJobRegistry

from imagen_assets import conf

logger = logging.getLogger(__name__)

#: The reconciler job, queued by path like every job.
RECONCILE_JOB = "imagen_assets.jobs.reconcile"
#: Job ids of reconcile runs start with this; each run has its own id.
RECONCILE_JOB_PREFIX = "imagen_assets-reconcile-"
#: Redis key naming the reconcile run that is due next.
RECONCILE_NEXT_KEY = "imagen_assets:reconcile:next"

#: Redis key set once jobs are queued on this Redis: its absence means Redis holds none of
#: this app's jobs (restarted without persistence, flushed, or new).
JOBS_MARKER_KEY = "imagen_assets:jobs-since"

Job_ = Callable[..., Any] | str


def job_path(func: Job_) -> str:
    """The dotted path RQ imports ``func`` by (a path is returned as it is)."""
    if isinstance(func, str):
        return func
    return f"{func.__module__}.{func.__qualname__}"


#: This process's Redis client for each queue, with the configuration it was made from.
#: django-rq makes a new client, and with it a new connection pool, for every queue it
#: hands out, so every enqueue opened a connection of its own (connect, handshake and an
#: INFO: about 0.8 ms, a quarter of what a webhook cost the web server); the client's pool
#: is reused instead. A changed ``RQ_QUEUES`` entry (tests) gets a new client; redis-py's
#: pool notices a fork and opens new connections in the child.
_clients: dict[str, tuple[str, Redis]] = {}


def _client(name: str) -> Redis:
    from django_rq.settings import QUEUES

    key = repr(sorted(QUEUES[name].items()))
    known = _clients.get(name)
    if known is not None and known[0] == key:
        return known[1]
    client = django_rq.get_connection(name)
    _clients[name] = (key, client)
    if known is not None:
        known[1].connection_pool.disconnect()
    return client


def get_queue() -> Queue:
    name = conf.get("QUEUE")
    # "auto": we decide when to enqueue (always after commit, via transaction.on_commit).
    return django_rq.get_queue(name, commit_mode="auto", connection=_client(name))


def enqueue(
    func: Job_,
    *args: Any,
    delay: float | None = None,
    job_id: str | None = None,
    timeout: int | None = None,
) -> bool:
    """Queue ``func(*args)`` now or after ``delay`` seconds, with RQ's time limit of
    ``timeout`` seconds (default: the queue's). False if Redis refused it."""
    path = job_path(func)
    options: dict[str, Any] = {"job_id": job_id} if job_id else {}
    if timeout:
        options["job_timeout"] = timeout
    try:
        queue = get_queue()
        if delay and delay > 0:
            due = time.time() + delay
            job = queue.enqueue_in(timedelta(seconds=delay), path, *args, **options)
            # RQ keeps whole seconds (due in 5.0 s could be moved at 4.0 s): the exact time,
            # for the precise scheduler of imagen_assets.worker (a stock one reads it as the
            # next whole second). XX: only while the job is still waiting there.
            registry = ScheduledJobRegistry(queue=queue)  # type: ignore[no-untyped-call]  # rq: untyped
            try:
                queue.connection.zadd(registry.key, {job.id: due}, xx=True)
            except RedisError as exc:  # queued all the same, due at the whole second
                logger.warning("Could not set the exact due time of %s: %s", job.id, exc)
        else:  # one round trip to Redis (RQ alone makes two)
            with queue.connection.pipeline() as pipeline:
                queue.enqueue(path, *args, pipeline=pipeline, **options)
                pipeline.execute()
    except RedisError as exc:
        logger.error(
            "Could not queue %s%r (%s); the reconciler will pick it up.",
            path.rsplit(".", 1)[-1],
            args,
            type(exc).__name__,
        )
        return False
    return True


# -- runs ------------------------------------------------------------------------------------

#: A job in one of these states runs no more: it returned, raised, was stopped or
#: cancelled, or its work horse died (RQ marks it failed: the worker that forked it, or
#: the cleanup of the started-job registry once that worker is gone too).
OVER = frozenset({JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED})


def current_job_id() -> str:
    """The id of the RQ job this code runs in; "" outside one (a management command, a
    web request, a thread of its own)."""
    job = get_current_job()
    return job.id if job is not None else ""


def jobs_over(job_ids: Iterable[str]) -> set[str]:
    """Which of ``job_ids`` are certainly over (:data:`OVER`), asked in one round trip. A
    job Redis does not hold is not among them (Redis may have lost it while it ran), nor
    is any when Redis cannot be reached."""
    ids = sorted({job_id for job_id in job_ids if job_id})
    if not ids:
        return set()
    try:
        jobs = Job.fetch_many(ids, connection=get_queue().connection)
    except (RedisError, NoSuchJobError, ValueError) as exc:  # the last two: a hash RQ cannot read
        logger.warning("Could not ask Redis which jobs are over (%s)", type(exc).__name__)
        return set()
    return {job.id for job in jobs if job is not None and job.get_status(refresh=False) in OVER}


# -- the reconciler's chain ------------------------------------------------------------------


def schedule_reconciler() -> bool:
    """Queue the reconciler's next run, ``RECONCILE_INTERVAL`` seconds from now, unless
    one is already on its way. False if nothing was queued.

    The runs form one chain: each run queues the next under a fresh job id and records
    that id in Redis. Whoever else asks (``imagen_reconcile --schedule``, every
    maintenance run of :class:`imagen_assets.worker.Worker`) queues nothing while the
    recorded run is scheduled, queued or running, so the chain starts again after Redis
    lost it and is never doubled; should two chains still start at the same moment, the
    one no longer recorded ends at its next run.
    """
    queue = get_queue()
    try:
        if _reconcile_pending(queue):
            return False
        job_id = f"{RECONCILE_JOB_PREFIX}{uuid.uuid4().hex}"
        queued = enqueue(RECONCILE_JOB, True, delay=conf.get("RECONCILE_INTERVAL"), job_id=job_id)
        if queued:
            queue.connection.set(RECONCILE_NEXT_KEY, job_id)
    except RedisError as exc:
        logger.error("Could not schedule the reconciler (%s)", type(exc).__name__)
        return False
    return queued


def reconciler_scheduled() -> bool:
    """Whether the reconciler's next run is scheduled, queued or running."""
    try:
        return _reconcile_pending(get_queue())
    except RedisError:
        return False


def _reconcile_pending(queue: Queue) -> bool:
    job_id = queue.connection.get(RECONCILE_NEXT_KEY)
    if not job_id:
        return False
    job_id = job_id.decode() if isinstance(job_id, bytes) else str(job_id)
    current = get_current_job()
    if current is not None and current.id == job_id:
        return False  # the recorded run is asking for its successor
    try:
        status = Job.fetch(job_id, connection=queue.connection).get_status()
    except NoSuchJobError:
        return False
    return status in (
        JobStatus.SCHEDULED,
        JobStatus.QUEUED,
        JobStatus.STARTED,
        JobStatus.DEFERRED,
    )


def restore_lost_jobs() -> bool:
    """When Redis holds none of this app's jobs (it restarted without persistence, or is
    new), queue one reconcile run that gives every open row last changed before this Redis
    started the job it waits for: submits and polls at the time they were due, the rest
    at once. Of all workers asking, one does it. True if that run was queued.

    Rows changed since Redis started had their next job queued on it already; a row that
    gets a job twice is no worse off, every job being idempotent.
    """
    try:
        connection = get_queue().connection
        if not connection.set(JOBS_MARKER_KEY, str(time.time()), nx=True):
            return False
        uptime = int(connection.info("server")["uptime_in_seconds"])
    except RedisError as exc:
        logger.error("Could not check whether Redis lost the jobs (%s)", type(exc).__name__)
        return False
    started = time.time() - uptime
    logger.warning(
        "Redis (up %d s) holds none of this app's jobs: queueing the job each open row "
        "changed before it started waits for",
        uptime,
    )
    if not enqueue(RECONCILE_JOB, False, started):
        with contextlib.suppress(RedisError):
            connection.delete(JOBS_MARKER_KEY)  # the next maintenance run tries again
        return False
    return True


def eviction_policy() -> str | None:
    """The queue's Redis ``maxmemory-policy`` (e.g. ``noeviction``), or None when Redis
    cannot be reached or will not say (``CONFIG`` disabled, as on some hosted services)."""
    try:
        pool = get_queue().connection.connection_pool
        # Its own short timeouts: asked at every startup, it must not hang one on a Redis
        # that does not answer, whatever the site configured.
        kwargs = {**pool.connection_kwargs, "socket_timeout": 2, "socket_connect_timeout": 2}
        probe = Redis(
            connection_pool=ConnectionPool(connection_class=pool.connection_class, **kwargs)
        )
        try:
            value = probe.config_get("maxmemory-policy").get("maxmemory-policy")
        finally:
            probe.connection_pool.disconnect()
    except (RedisError, OSError, ValueError, TypeError, KeyError):
        # Unreachable, CONFIG disabled, or settings Redis cannot use (a malformed URL
        # option): another check or the first enqueue says so, not this one.
        return None
    if isinstance(value, bytes):
        value = value.decode()
    return str(value) if value else None


# -- claims ----------------------------------------------------------------------------------


def claim_once(key: str, ttl: int) -> Callable[[], object] | None:
    """Claim ``key`` in Redis for ``ttl`` seconds, atomically: of all jobs asking, exactly
    one gets a function that gives the claim back (to call when its work failed); the
    others, or anyone while Redis is unreachable, get None."""
    try:
        connection = get_queue().connection
        if not connection.set(key, "1", nx=True, ex=ttl):
            return None
    except RedisError as exc:
        logger.error("Could not claim %s (%s)", key, type(exc).__name__)
        return None
    return lambda: connection.delete(key)
