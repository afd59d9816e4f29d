"""Redis faults with a real redis-server and real `rqworker` processes (docs/reliability.md,
section B): Redis restarted empty (Q8) or from its append-only file (Q9), stalled by
``CLIENT PAUSE`` (Q10), and set to evict keys (Q14)."""

from __future__ import annotations

import io
import logging
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stderr
from pathlib import Path
from typing import Any

import pytest
import redis
from django.core.management import call_command

from campaigns import stack
from campaigns.settings import imagen_files_root
from imagen_assets import jobs, queueing, services
from imagen_assets.models import Campaign, GeneratedImage, GenerationTask
from imagen_assets.status import TaskStatus
from tests.conftest import RedisServer, apply_env_settings, wait_for
from tests.factories import wait_all_finished

pytestmark = [pytest.mark.integration]


@pytest.fixture
def campaign(stack_env: dict[str, str]) -> Campaign:
    return Campaign.objects.create(name="Weather", slug="weather")


def own_redis_env(server: RedisServer, stack_env: dict[str, str], settings: Any) -> dict[str, str]:
    """The stack's environment on ``server`` instead of the session's Redis, here too."""
    env = {**stack_env, "REDIS_URL": server.url}
    apply_env_settings(settings, env)
    return env


def scheduled_polls(url: str) -> set[str]:
    """Ids of the poll jobs waiting in RQ's scheduled-job registry of ``url``."""
    client = redis.Redis.from_url(url)
    try:
        return {
            job_id.decode()
            for job_id in client.zrange("rq:scheduled:default", 0, -1)
            if b"jobs.poll" in (client.hget(f"rq:job:{job_id.decode()}", "description") or b"")
        }
    finally:
        client.close()


def stored_originals(env: dict[str, str]) -> list[Path]:
    root = Path(imagen_files_root(env))
    return [p for p in root.rglob("*") if p.is_file() and p.parent.name != "thumbs"]


def in_flight(campaign: Campaign, url: str, count: int) -> list[GenerationTask]:
    """Ask for ``count`` images and wait until every task is submitted and has its next
    status read scheduled in Redis."""
    tasks = services.request_images(campaign=campaign, prompt="Squall line", count=count)
    wait_for(
        lambda: len(scheduled_polls(url)) == len(tasks),
        30,
        "every task to be submitted with its read scheduled",
    )
    assert not GenerationTask.objects.filter(provider_task_id="").exists()
    return tasks


def assert_finished_once(
    tasks: list[GenerationTask],
    count: int,
    submits: int,
    sandbox: Any,
    env: dict[str, str],
    worker: Any,
) -> None:
    # 150 s: well inside the 180 s the recovery must take (benchmarks.recovery measures it,
    # about 30 s), well short of the 405 s an idle stock worker stays blocked.
    try:
        images = wait_all_finished(tasks, timeout=150)
    except AssertionError as exc:
        rows = list(
            GenerationTask.objects.filter(pk__in=[t.pk for t in tasks]).values_list(
                "pk", "status", "polls", "next_poll_at", "updated_at"
            )
        )
        raise AssertionError(f"{exc}\ntasks: {rows}\nworker log:\n{worker.log_tail(80)}") from None
    assert [i.status for i in images] == [GeneratedImage.Status.SUCCEEDED] * count
    assert sandbox.stats["wavespeed_submits"] - submits == len(tasks)  # none submitted twice
    for task in GenerationTask.objects.filter(pk__in=[t.pk for t in tasks]):
        assert (task.status, task.attempts) == (TaskStatus.SUCCEEDED, 1)
    assert len(stored_originals(env)) == count  # each image stored once


class RedisRestartTests:
    def test_redis_restarted_empty_every_row_finishes_and_nothing_is_submitted_twice(
        self,
        campaign: Campaign,
        sandbox: Any,
        settings: Any,
        stack_env: dict[str, str],
        redis_server: Callable[..., RedisServer],
        start_worker: Any,
    ) -> None:
        # Q8. Default settings, the documented worker command; polling only. Every job
        # Redis held (the scheduled reads) is lost; the reconciler's own next run is a
        # minute away and would leave rows alone for two: the worker must notice and give
        # every row its job back. Stock RQ timings (an idle worker blocked for 405 s) fail.
        sandbox.config.latency = 6
        sandbox.config.drop_callbacks = True
        server = redis_server()
        env = own_redis_env(server, stack_env, settings)
        submits = sandbox.stats["wavespeed_submits"]
        worker = start_worker(env)
        tasks = in_flight(campaign, server.url, 8)

        server.kill()
        server.start()  # empty: no persistence
        assert scheduled_polls(server.url) == set()

        assert_finished_once(tasks, 8, submits, sandbox, env, worker)
        assert worker.alive()
        assert "registering again and restoring the jobs" in worker.log_tail(400)

    def test_redis_restarted_from_its_append_only_file_keeps_the_queued_jobs(
        self,
        campaign: Campaign,
        sandbox: Any,
        settings: Any,
        stack_env: dict[str, str],
        redis_server: Callable[..., RedisServer],
        start_worker: Any,
    ) -> None:
        # Q9. appendonly yes, appendfsync everysec: what was written more than a second
        # before the crash survives it, so the scheduled reads carry on by themselves and
        # nothing is restored.
        sandbox.config.latency = 6
        sandbox.config.drop_callbacks = True
        server = redis_server(appendonly=True)
        env = own_redis_env(server, stack_env, settings)
        submits = sandbox.stats["wavespeed_submits"]
        worker = start_worker(env)
        tasks = in_flight(campaign, server.url, 8)
        client = redis.Redis.from_url(server.url)
        assert client.info("persistence")["aof_last_write_status"] == "ok"
        client.close()

        # Redis writes the file before it answers; "everysec" only bounds what the
        # operating system may still hold when the machine (not the process) dies.
        server.kill()
        server.start()
        assert scheduled_polls(server.url)  # the reads it held, still scheduled
        client = redis.Redis.from_url(server.url)
        assert client.get(queueing.JOBS_MARKER_KEY)  # so nothing is restored twice
        client.close()

        assert_finished_once(tasks, 8, submits, sandbox, env, worker)
        assert "restoring the jobs" not in worker.log_tail(400)


class RedisStallTests:
    def test_a_stalled_redis_fails_the_enqueue_fast_and_leaves_the_rows_to_the_reconciler(
        self,
        campaign: Campaign,
        sandbox: Any,
        settings: Any,
        redis_url: str,
        start_worker: Any,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        # Q10. Writes stall for longer than any request may take; the example site's
        # socket timeout (2 s) fails the enqueue, the request returns while Redis is
        # still paused, and the rows wait in the database.
        assert "socket_timeout=2" in settings.RQ_QUEUES["default"]["URL"]
        worker = start_worker()
        submits = sandbox.stats["wavespeed_submits"]
        admin = redis.Redis.from_url(redis_url)
        probe = redis.Redis.from_url(redis_url, socket_timeout=0.5)
        admin.execute_command("CLIENT", "PAUSE", 60_000, "WRITE")
        try:
            with ThreadPoolExecutor(1) as pool, caplog.at_level(logging.ERROR):
                tasks = pool.submit(
                    services.request_images, campaign=campaign, prompt="Fog", count=12
                ).result(timeout=50)
            # Returned, and Redis still refuses writes: the request did not wait it out.
            with pytest.raises(redis.TimeoutError):
                probe.set("imagen-test-probe", "1")
        finally:
            admin.execute_command("CLIENT", "UNPAUSE")
            admin.close()
            probe.close()
        assert len(tasks) == 3
        assert "Could not queue submit_many" in caplog.text and "TimeoutError" in caplog.text
        assert "Could not queue every submit; the reconciler will queue the rest." in caplog.text
        for task in GenerationTask.objects.filter(pk__in=[t.pk for t in tasks]):
            assert (task.status, task.attempts, task.provider_task_id) == ("queued", 0, "")

        settings.IMAGEN_ASSETS["RECONCILE_AFTER"] = 0
        assert jobs.reconcile()["submit"] == 3
        images = wait_all_finished(tasks)
        assert [i.status for i in images] == [GeneratedImage.Status.SUCCEEDED] * 12
        assert sandbox.stats["wavespeed_submits"] - submits == 3
        assert worker.alive()


class EvictionPolicyTests:
    def test_check_warns_about_a_redis_that_evicts_keys(
        self, stack_env: dict[str, str], redis_conn: Any
    ) -> None:
        # Q14, with `manage.py check` as an operator runs it, against the real server.
        def check() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                stack.manage("check"),
                env=stack_env,
                capture_output=True,
                text=True,
            )

        assert queueing.eviction_policy() == "noeviction"
        assert "W020" not in check().stderr
        redis_conn.config_set("maxmemory-policy", "allkeys-lru")
        try:
            result = check()
            assert queueing.eviction_policy() == "allkeys-lru"
        finally:
            redis_conn.config_set("maxmemory-policy", "noeviction")
        assert "imagen_assets.W020" in result.stderr
        assert "maxmemory-policy 'allkeys-lru'" in result.stderr
        assert result.returncode == 0  # a warning: the site and the workers still start

    def test_check_says_nothing_when_redis_cannot_be_reached(
        self, settings: Any, tmp_path: Path
    ) -> None:
        settings.RQ_QUEUES = {"default": {"URL": f"unix://{tmp_path / 'none.sock'}?db=0"}}
        out = io.StringIO()
        with redirect_stderr(out):
            call_command("check", stdout=out, stderr=out)
        assert "W020" not in out.getvalue()
