"""An RQ worker class that gets delayed jobs moving again soon after another worker crashed.

Polls, submit retries and the reconciler are *scheduled* jobs; one worker's scheduler moves
them to the queue when due, holding a lock in Redis. When that worker is killed (SIGKILL,
OOM), the lock lives on for 61 s, and stock RQ workers only try to take it over at their
maintenance run, every 10 minutes (rq/rq#1758). Until then nothing scheduled runs.

This class closes the gap: at start it breaks a lock whose holder was a scheduler process on
this host that no longer exists, and it runs maintenance (which retries the lock) every 30 s.
Its maintenance also keeps the reconciler's periodic run scheduled, starting it again when
Redis lost it.

After Redis lost its data (a restart without persistence) it recovers within seconds, not
minutes: an idle worker waits for jobs at most one maintenance interval at a time, whatever
``worker_ttl`` says (django-rq's ``rqworker`` always passes 420 s, which made an idle worker
block for about 405 s); a lost connection is retried every few seconds at most; and a worker
that finds its own registration gone from Redis registers again and runs maintenance at
once, which restarts the scheduler and queues the job every open row waits for
(:func:`imagen_assets.queueing.restore_lost_jobs`).
Its scheduler is also precise: stock RQ keeps a delayed job's due time in whole seconds and
looks every second, so a job due in 5.0 s runs anywhere from 4 to 6 s later. A status read
due when the provider is expected to be done would then be early half the time (a wasted
read) or up to a second late. :func:`imagen_assets.queueing.enqueue` writes the exact due
time (a float score; a stock scheduler reads it as due at the next whole second, never
early), and this worker's scheduler looks every :data:`SCHEDULER_INTERVAL` seconds and
moves a job when its exact time has come.

Use it with ``rqworker --worker-class imagen_assets.worker.Worker --with-scheduler`` or
``RQ = {"WORKER_CLASS": "imagen_assets.worker.Worker"}``.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import socket
import time
from datetime import timedelta
from typing import Any

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Worker as RQWorker
from rq import worker_registration
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.job import Job
from rq.queue import Queue
from rq.registry import ScheduledJobRegistry
from rq.scheduler import SCHEDULER_KEY_TEMPLATE, RQScheduler
from rq.utils import now

logger = logging.getLogger(__name__)

#: Redis going away (restarted, unreachable); stock RQ quits when this happens outside its
#: wait for jobs, for example while it records how a job ended.
_REDIS_LOST = (RedisConnectionError, RedisTimeoutError)

# Delete the lock only if it still names the dead scheduler (compare-and-delete).
_RELEASE_IF_OWNER = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


#: malloc arenas a worker's processes use (glibc's ``M_ARENA_MAX``) unless the environment
#: sets ``MALLOC_ARENA_MAX``. glibc gives each thread that allocates an arena of its own
#: (up to 8 per core), and an arena keeps what large images left in it: a job's threads
#: (imagen_assets.jobs.in_threads) storing 2K results took a work horse from 158 to 374 MiB.
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # glibc's malloc.h


def limit_malloc_arenas() -> bool:
    """Cap this process's malloc arenas at :data:`MALLOC_ARENAS` (inherited by the work
    horses it forks); False where that is not glibc, or the environment decides."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_ARENA_MAX, MALLOC_ARENAS))
    except (OSError, AttributeError):  # not glibc: its allocator has no such knob
        return False


#: How often the scheduler looks for delayed jobs that are due (RQ's own: every second).
SCHEDULER_INTERVAL = 0.2


class PreciseScheduledJobRegistry(ScheduledJobRegistry):
    """Due means due to the fraction of a second (RQ compares whole seconds)."""

    def get_jobs_to_schedule(
        self, timestamp: int | None = None, chunk_size: int = 1000
    ) -> list[str]:
        due = self.connection.zrangebyscore(self.key, 0, time.time(), start=0, num=chunk_size)
        return [job_id.decode() if isinstance(job_id, bytes) else str(job_id) for job_id in due]


class PreciseScheduler(RQScheduler):
    """RQ's scheduler, looking every :data:`SCHEDULER_INTERVAL` s and moving jobs at their
    exact due time (its heartbeat and locks keep RQ's one-second rhythm)."""

    def prepare_registries(self, queue_names: Any = None) -> None:
        names = list(queue_names or self._acquired_locks)
        self._scheduled_job_registries = [
            PreciseScheduledJobRegistry(  # type: ignore[no-untyped-call]  # rq: untyped
                name, connection=self.connection, serializer=self.serializer
            )
            for name in names
        ]

    def work(self) -> None:
        # RQ's loop (rq.scheduler.RQScheduler.work), looking for due jobs more often.
        self._install_signal_handlers()  # type: ignore[no-untyped-call]
        self.register_birth()
        beat = 0.0
        while not self._stop_requested:
            if time.monotonic() - beat >= self.interval:
                if self.should_reacquire_locks:
                    self.acquire_locks()  # type: ignore[no-untyped-call]
                self.heartbeat()  # type: ignore[no-untyped-call]
                beat = time.monotonic()
            self.enqueue_scheduled_jobs()  # type: ignore[no-untyped-call]
            time.sleep(SCHEDULER_INTERVAL)
        self.stop()  # type: ignore[no-untyped-call]


def _process_exists(pid: int) -> bool:
    """True if ``pid`` is a live process here (a zombie, killed but not reaped, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # "pid (comm) S ...": the state letter follows the last ")".
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def break_stale_scheduler_locks(connection: Redis, queue_names: list[str]) -> list[str]:
    """Release scheduler locks held by dead scheduler processes of this host; returns the
    queue names whose lock was released. Locks of other hosts are left to expire."""
    released = []
    hostname = socket.gethostname()
    for name in queue_names:
        key = RQScheduler.get_locking_key(name)
        owner = connection.get(key)
        if owner is None:
            continue
        owner_name = owner.decode() if isinstance(owner, bytes) else str(owner)
        meta = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in connection.hgetall(SCHEDULER_KEY_TEMPLATE % owner_name).items()
        }
        host = meta.get("hostname", "")
        pid = int(meta.get("pid") or 0)
        dead = host == hostname and pid > 0 and not _process_exists(pid)
        if dead and connection.eval(_RELEASE_IF_OWNER, 1, key, owner):
            released.append(name)
            logger.warning(
                "Released the scheduler lock of queue %s held by dead process %s", name, pid
            )
    return released


class Worker(RQWorker):
    """``rq.Worker`` that recovers the scheduler within seconds (same host) or about
    a minute and a half (another host) after the worker running it died, and its jobs
    within seconds after Redis lost them."""

    #: Longest wait between attempts to reach Redis again (RQ's own is 60 s).
    max_connection_wait_time = 5.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["maintenance_interval"] = kwargs.get("maintenance_interval") or 30
        kwargs["worker_ttl"] = kwargs.get("worker_ttl") or 60
        super().__init__(*args, **kwargs)

    @property
    def dequeue_timeout(self) -> int:
        # An idle worker blocks in BLMOVE for this long, then heartbeats and checks whether
        # maintenance is due: never longer than the maintenance interval, whatever the ttl.
        return max(1, min(self.worker_ttl - 15, int(self.maintenance_interval)))

    def execute_job(self, job: Job, queue: Queue) -> None:
        try:
            super().execute_job(job, queue)
        except _REDIS_LOST as exc:
            # What the job did is in the database; a job cut short is the reconciler's.
            logger.error(
                "Worker %s: lost Redis around job %s (%s); waiting for it to come back",
                self.name,
                job.id,
                exc,
            )
            self._wait_for_redis()

    def check_for_suspension(self, burst: bool) -> None:
        # Redis away: the wait for jobs that follows retries the connection with backoff.
        with contextlib.suppress(*_REDIS_LOST):
            super().check_for_suspension(burst)

    def _wait_for_redis(self) -> None:
        wait = 1.0
        while not self._stop_requested:
            try:
                self.connection.ping()
                return
            except _REDIS_LOST:
                time.sleep(wait)
                wait = min(wait * 2, self.max_connection_wait_time)

    def _start_scheduler(
        self,
        burst: bool = False,
        logging_level: str | None = "INFO",
        date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
        log_format: str = DEFAULT_LOGGING_FORMAT,
    ) -> None:
        # RQ's own, with the precise scheduler.
        self.scheduler = PreciseScheduler(
            self.queues,
            connection=self.connection,
            logging_level=logging_level if logging_level is not None else self.log.level,
            date_format=date_format,
            log_format=log_format,
            serializer=self.serializer,
        )
        self.scheduler.acquire_locks()  # type: ignore[no-untyped-call]
        if self.scheduler.acquired_locks:
            if burst:
                try:
                    self.scheduler.register_birth()
                    self.scheduler.enqueue_scheduled_jobs()  # type: ignore[no-untyped-call]
                finally:
                    self.scheduler.release_locks()  # type: ignore[no-untyped-call]
                    self.scheduler.register_death()
            else:
                self.scheduler.start()  # type: ignore[no-untyped-call]

    def work(self, *args: Any, **kwargs: Any) -> bool:
        # Built here, once, and inherited by every work horse forked from here: each job
        # would otherwise read the CA bundle again for each HTTP client it makes.
        from imagen_assets.providers.http import tls_context  # needs Django set up

        tls_context()
        limit_malloc_arenas()
        if kwargs.get("with_scheduler"):
            break_stale_scheduler_locks(self.connection, [q.name for q in self.queues])
        return super().work(*args, **kwargs)

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        lost = (
            pipeline is None
            and not self.is_horse
            and self.birth_date is not None
            and not self.connection.hexists(self.key, "birth")
        )
        super().heartbeat(timeout, pipeline)
        if lost:
            self._register_again()

    def _register_again(self) -> None:
        """Redis no longer knows this worker (it lost its data): register again and run
        maintenance now rather than at the next interval."""
        logger.warning(
            "Worker %s: Redis lost this worker's registration (restarted without its data?); "
            "registering again and restoring the jobs",
            self.name,
        )
        with self.connection.pipeline() as pipeline:
            pipeline.hset(self.key, mapping=self.serialize())
            worker_registration.register(self, pipeline)
            pipeline.expire(self.key, self.worker_ttl + 60)
            pipeline.execute()
        self.last_cleaned_at = now() - timedelta(seconds=self.maintenance_interval + 1)  # type: ignore[assignment]  # rq: None until set

    def run_maintenance_tasks(self) -> None:
        try:
            # rq leaves this method unannotated.
            super().run_maintenance_tasks()  # type: ignore[no-untyped-call]
        except _REDIS_LOST as exc:
            logger.warning("Worker %s: maintenance put off, Redis is away (%s)", self.name, exc)
            return  # tried again at the next run; the wait for jobs reconnects first
        from imagen_assets import queueing  # needs Django set up, which rqworker does first

        # At start and every maintenance run: when Redis lost the jobs (a restart without
        # persistence), each open row gets the job it waits for again, and the
        # reconciler's chain is started again, so no row stays stuck.
        queueing.restore_lost_jobs()
        queueing.schedule_reconciler()
