"""queueing.get_queue keeps one Redis client per queue: django-rq makes a new client, and
so a new connection, for every queue it hands out, which cost each webhook a connect and a
handshake (benchmarks.webhooks)."""

from __future__ import annotations

from typing import Any

import pytest

from imagen_assets import queueing

pytestmark = pytest.mark.integration

JOB = "imagen_assets.jobs.reconcile"


def test_enqueues_share_one_connection(redis_url: str, redis_conn: Any, settings: Any) -> None:
    settings.RQ_QUEUES = {"default": {"URL": redis_url}}
    assert queueing.enqueue(JOB)  # the first may open it
    opened = redis_conn.info("stats")["total_connections_received"]

    for _ in range(20):
        assert queueing.enqueue(JOB)

    assert redis_conn.info("stats")["total_connections_received"] == opened
    assert queueing.get_queue().count == 21


def test_another_redis_in_the_settings_gets_its_own_client(
    redis_url: str, redis_conn: Any, redis_server: Any, settings: Any
) -> None:
    settings.RQ_QUEUES = {"default": {"URL": redis_url}}
    assert queueing.enqueue(JOB)
    other = redis_server()
    settings.RQ_QUEUES = {"default": {"URL": other.url}}

    assert queueing.enqueue(JOB)

    assert queueing.get_queue().count == 1  # on the other Redis
    assert redis_conn.llen("rq:queue:default") == 1  # the first one's job only
