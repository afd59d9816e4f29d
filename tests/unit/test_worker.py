"""The worker class's timings, as django-rq's ``rqworker`` builds it (no Redis needed: the
worker is only constructed)."""

from __future__ import annotations

import redis

from imagen_assets.worker import Worker


def worker(**kwargs: object) -> Worker:
    # Port 1: nothing listens there; without prepare_for_work nothing is sent to Redis.
    return Worker(
        ["default"],
        connection=redis.Redis.from_url("redis://127.0.0.1:1/0"),
        prepare_for_work=False,
        **kwargs,
    )


class WorkerTimingTests:
    def test_an_idle_worker_wakes_every_maintenance_interval_whatever_rqworkers_ttl(self):
        # `manage.py rqworker` always passes worker_ttl=420: stock RQ then blocks an idle
        # worker for 405 s, and maintenance (the scheduler's restart, the jobs Redis lost)
        # waits behind it.
        built = worker(worker_ttl=420)
        assert built.maintenance_interval == 30
        assert built.dequeue_timeout == 30
        # Its connection's read timeout still outlasts that wait.
        assert built.connection.connection_pool.connection_kwargs["socket_timeout"] == 40

    def test_a_short_ttl_still_wins(self):
        assert worker(worker_ttl=20).dequeue_timeout == 5

    def test_a_lost_connection_is_retried_every_few_seconds_at_most(self):
        assert worker().max_connection_wait_time <= 5
