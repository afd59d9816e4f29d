"""The concurrency cap and the precise scheduler with real parts: redis-server, two
`rqworker --with-scheduler` processes (the app's worker class) and the sandbox over HTTP,
which answers 429 to a submit beyond its own limit, as WaveSpeed does."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from imagen_assets import capacity, queueing, services
from imagen_assets.models import Campaign, GenerationTask
from tests.conftest import apply_env_settings, wait_for
from tests.factories import running_wavespeed_task, wait_all_finished

pytestmark = [pytest.mark.integration]


@pytest.fixture
def capped_env(stack_env: dict[str, str], settings: Any) -> dict[str, str]:
    env = {**stack_env, "IMAGEN_SANDBOX_MAX_CONCURRENCY": "2"}
    apply_env_settings(settings, env)
    return env


class CapTests:
    def test_a_batch_waits_its_turn_instead_of_collecting_429s(
        self, capped_env: dict[str, str], sandbox: Any, start_worker: Any
    ) -> None:
        sandbox.config.latency = 1.0
        sandbox.config.max_concurrency = 2
        sandbox.config.over_capacity = "reject"  # 429 beyond 2, as a full account answers
        before = sandbox.stats
        start_worker(capped_env)
        start_worker(capped_env)
        campaign = Campaign.objects.create(name="Capped", slug="capped")

        tasks = services.request_images(campaign=campaign, prompt="Kites", count=24)
        assert len(tasks) == 6
        # Two go at once; the others wait, saying so, with no job of their own.
        wait_for(lambda: capacity.counts("sandbox")[0] == 2, what="two tasks in flight")
        images = wait_all_finished(tasks, timeout=90)

        assert {image.status for image in images} == {"succeeded"}
        stats = sandbox.stats
        assert stats["over_capacity"] - before["over_capacity"] == 0
        assert stats["peak_in_progress"] <= 2
        assert stats["wavespeed_submits"] - before["wavespeed_submits"] == 6
        # Waiting is not an attempt: each task was sent once.
        assert set(GenerationTask.objects.values_list("attempts", flat=True)) == {1}
        assert capacity.counts("sandbox") == (0, 0)


def record_time(path: str) -> None:
    """A job that writes when it ran."""
    with open(path, "w") as handle:
        handle.write(repr(time.time()))


class PreciseSchedulerTests:
    def test_a_delayed_job_never_runs_before_its_time(
        self, stack_env: dict[str, str], worker: Any, tmp_path: Any
    ) -> None:
        # RQ keeps whole seconds: due in 1.9 s could have run 1.0 s later. Five in a row,
        # each at a different fraction of a second.
        for n in range(5):
            path = tmp_path / f"ran-{n}"
            delay = 1.1 + n * 0.2
            due = time.time() + delay
            assert queueing.enqueue("tests.integration.test_capacity_stack.record_time",
                                    str(path), delay=delay)  # fmt: skip
            ran = wait_for(lambda p=path: p.exists() and p.read_text(), what=f"job {n}")
            assert float(ran) >= due - 0.05, (n, float(ran) - due)

    def test_a_waiting_task_is_sent_by_the_reconciler_when_its_wake_was_lost(
        self, capped_env: dict[str, str], sandbox: Any, start_worker: Any
    ) -> None:
        sandbox.config.latency = 0.3
        campaign = Campaign.objects.create(name="Lost wake", slug="lost-wake")
        # A task that waited for a slot whose wake-up never came (Redis lost it).
        task = running_wavespeed_task(
            campaign,
            "",
            provider="sandbox",
            status="queued",
            error_message="Waiting for Sandbox: 2 tasks are running, its limit.",
        )
        GenerationTask.objects.filter(pk=task.pk).update(
            updated_at=timezone.now() - timedelta(hours=1)
        )
        start_worker(capped_env)

        queueing.enqueue("imagen_assets.jobs.reconcile")

        wait_for(
            lambda: GenerationTask.objects.get(pk=task.pk).status == "succeeded",
            what="the waiting task sent and done",
        )
