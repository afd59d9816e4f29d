"""Builders, waits and signed requests the tests share."""

from __future__ import annotations

import time
from typing import Any

from imagen_assets import jobs, lifecycle
from imagen_assets.models import Campaign, GeneratedImage, GenerationTask
from imagen_assets.providers import get_provider
from imagen_assets.sandbox.signing import sign_wavespeed_webhook
from imagen_assets.status import TaskStatus
from tests.conftest import wait_for


def running_wavespeed_task(
    campaign: Campaign, provider_task_id: str, **fields: Any
) -> GenerationTask:
    """A WaveSpeed task already at the provider, with its queued image rows."""
    values: dict[str, Any] = {
        "provider": "wavespeed",
        "model": "wavespeed-ai/imagen4",
        "prompt": "p",
        "aspect_ratio": "1:1",
        "num_images": 1,
        "provider_task_id": provider_task_id,
        "status": "processing",
        **fields,
    }
    task = GenerationTask.objects.create(campaign=campaign, **values)
    for index in range(task.num_images):
        GeneratedImage.objects.create(task=task, campaign=campaign, index=index)
    return task


def submitted_and_finished_at_provider(task: GenerationTask) -> None:
    """Submit ``task`` here, wait until the provider has finished it and record that, so
    only ``jobs.complete`` is left to run (as a webhook and a poll would both do)."""
    assert jobs.submit(task.pk).did is jobs.Did.SUBMITTED
    task.refresh_from_db()
    with get_provider(task.provider) as provider:
        state = wait_for(
            lambda: (
                (s := provider.fetch(task.provider_task_id)).status == TaskStatus.SUCCEEDED and s
            ),
            15,
            "the provider to finish",
        )
    lifecycle.apply_state(task.pk, state, counted_poll=True)


def wait_all_finished(tasks: list[GenerationTask], timeout: float = 40.0) -> list[GeneratedImage]:
    """Wait until no image of ``tasks`` is queued or generating; returns them in order."""
    images = GeneratedImage.objects.filter(task__in=tasks)
    wait_for(lambda: not images.unfinished().exists(), timeout, "every image to finish")
    return list(images.select_related("task").order_by("task_id", "index"))


def signed_wavespeed_headers(
    secret: str, webhook_id: str, body: bytes, *, timestamp: int | None = None
) -> dict[str, str]:
    """The headers of a WaveSpeed webhook for ``body``, signed at ``timestamp`` (default now).

    The tests' one signer: the package's own, which tests/sandbox/test_sandbox_server.py
    pins to a hand-computed vector and which shares no code with the provider's verifier.
    """
    if timestamp is None:
        timestamp = int(time.time())
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign_wavespeed_webhook(secret, webhook_id, timestamp, body),
        "content-type": "application/json",
    }
