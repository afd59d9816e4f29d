"""Cancel against the real stack: redis-server, an RQ worker, and the sandbox's Wave API over
HTTP (``POST /v1/tasks/{id}/cancel``), with its callbacks into the live Django server."""

from __future__ import annotations

from typing import Any

import pytest

from imagen_assets import cancels, services
from imagen_assets.models import Campaign, GeneratedImage, GenerationTask, WebhookEvent
from imagen_assets.providers import get_provider
from imagen_assets.status import CANCELLED_MAY_BILL, CANCELLED_UNBILLED, ImageStatus, TaskStatus
from tests.conftest import wait_for

pytestmark = [pytest.mark.integration]


@pytest.fixture
def campaign(stack_env: dict[str, str]) -> Campaign:
    return Campaign.objects.create(name="Autumn", slug="autumn")


def submitted(task: GenerationTask) -> GenerationTask:
    return wait_for(
        lambda: GenerationTask.objects.exclude(provider_task_id="").filter(pk=task.pk).first(),
        20,
        "the worker to submit the task",
    )


class WaveCancelOverHTTPTests:
    def test_a_task_still_queued_at_wave_is_cancelled_there_and_refunded(
        self, campaign: Campaign, sandbox: Any, worker: Any
    ) -> None:
        # One slot, held by a long first task: the second waits queued at Wave.
        sandbox.config.max_concurrency = 1
        sandbox.config.latency = 8.0
        first, second = (
            services.request_images(campaign=campaign, prompt=f"Leaf {n}", provider="wave")[0]
            for n in (1, 2)
        )
        submitted(first)
        task = submitted(second)
        before = sandbox.stats["wave_cancels"]
        report = cancels.cancel(task.images.values_list("pk", flat=True))
        assert report.cancelled, report.refused
        assert sandbox.stats["wave_cancels"] == before + 1
        task.refresh_from_db()
        assert task.status == TaskStatus.CANCELLED
        assert task.error_code == CANCELLED_UNBILLED
        assert task.cost == 0
        assert "before starting it" in task.error_message
        cancels.cancel(first.images.values_list("pk", flat=True))  # free the worker

    def test_a_task_wave_is_making_is_not_stored_when_it_finishes(
        self, campaign: Campaign, sandbox: Any, worker: Any
    ) -> None:
        sandbox.config.latency = 2.5
        before = sandbox.stats["callbacks_sent"]
        (task,) = services.request_images(campaign=campaign, prompt="A lantern", provider="wave")
        task = submitted(task)
        with get_provider("wave") as wave:
            wait_for(
                lambda: wave.fetch(task.provider_task_id).status == TaskStatus.PROCESSING,
                10,
                "Wave to start the task",
            )
        report = cancels.cancel(task.images.values_list("pk", flat=True))
        assert "had already started the task and will charge for it" in report.message
        # Wave finishes it anyway and calls back; the late result changes nothing here.
        wait_for(lambda: sandbox.stats["callbacks_sent"] > before, 15, "Wave's callback")
        wait_for(
            lambda: WebhookEvent.objects.filter(
                provider_task_id=task.provider_task_id, processed_at__isnull=False
            ).exists(),
            15,
            "the callback to be processed",
        )
        task.refresh_from_db()
        assert task.status == TaskStatus.CANCELLED
        assert task.error_code == CANCELLED_MAY_BILL
        assert task.cost is None
        image = GeneratedImage.objects.get(task=task)
        assert image.status == ImageStatus.CANCELLED
        assert not image.file
        assert campaign.committed_spend() == task.estimated_cost
