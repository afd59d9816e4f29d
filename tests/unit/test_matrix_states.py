"""Events out of order and duplicated (docs/reliability.md S1), with Hypothesis.

Each example is a sequence of signed WaveSpeed states (``created``, ``processing``,
``completed``, ``failed``, with duplicates, in any order) recorded as webhook events and
processed one by one through :func:`imagen_assets.jobs.process_webhook`, the path a real
delivery takes. After every step: the task's rank never went down, a terminal status never
changed, and the completion's side effects (the download, the stored file, the
``image_ready`` signal) happened at most once.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from django.core.files.storage import default_storage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from unit_helpers import FakeCDN, image_bytes, make_campaign, make_task

from imagen_assets import jobs, signals
from imagen_assets.models import GeneratedImage, GenerationTask, WebhookEvent
from imagen_assets.status import TaskStatus

pytestmark = pytest.mark.django_db

EVENTS = ["created", "processing", "completed", "failed"]
STATUS_OF = {
    "created": TaskStatus.SUBMITTED,
    "processing": TaskStatus.PROCESSING,
    "completed": TaskStatus.SUCCEEDED,
    "failed": TaskStatus.FAILED,
}
counter = itertools.count()


def state(event: str, task_id: str, url: str) -> dict[str, Any]:
    status = STATUS_OF[event]
    return {
        "task_id": task_id,
        "status": status.value,
        "progress": None,
        "outputs": [{"url": url, "nsfw": False}] if status == TaskStatus.SUCCEEDED else [],
        "error_code": "",
        "error_message": "the provider says no" if status == TaskStatus.FAILED else "",
        "cost": None,
    }


class OutOfOrderEventTests:
    @settings(
        max_examples=120,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        sequence=st.lists(st.sampled_from(EVENTS), min_size=1, max_size=8),
        start=st.sampled_from(["submitted", "processing"]),
    )
    def test_status_never_regresses_and_completion_happens_once(
        self, cdn: FakeCDN, enqueued: list[Any], sequence: list[str], start: str
    ) -> None:
        n = next(counter)
        campaign = make_campaign(f"s1-{n}")
        provider_task_id = f"s1-task-{n}"
        task = make_task(campaign, status=start, provider_task_id=provider_task_id)
        path = f"/s1-{n}.png"
        cdn.files[path] = image_bytes("PNG", (24, 16))
        ready: list[int] = []

        def on_ready(sender: Any, image: GeneratedImage, **kwargs: Any) -> None:
            ready.append(image.pk)

        signals.image_ready.connect(on_ready)
        try:
            seen = [TaskStatus(start)]
            first_terminal = next((STATUS_OF[e] for e in sequence if STATUS_OF[e].terminal), None)
            for position, name in enumerate(sequence):
                event = WebhookEvent.objects.create(
                    provider="wavespeed",
                    event_id=f"evt-{n}-{position}",
                    provider_task_id=provider_task_id,
                    state=state(name, provider_task_id, cdn.url(path)),
                )
                with self.captured_on_commit():
                    jobs.process_webhook(event.pk)
                status = GenerationTask.objects.get(pk=task.pk).status_enum
                assert status.rank >= seen[-1].rank, (sequence, seen, status)
                if seen[-1].terminal:
                    assert status == seen[-1], (sequence, seen, status)
                seen.append(status)

            downloads = [r for r in cdn.requests if r.url.path == path]
            image = GeneratedImage.objects.get(task=task)
            final = seen[-1]
            if first_terminal is not None:
                assert final == first_terminal, (sequence, seen)
            assert len(downloads) <= 1, sequence
            if final == TaskStatus.SUCCEEDED:
                assert image.status == GeneratedImage.Status.SUCCEEDED
                assert len(downloads) == 1
                assert ready == [image.pk]
                assert default_storage.exists(image.file.name)
            else:
                assert image.status != GeneratedImage.Status.SUCCEEDED
                assert ready == []
                assert not image.file
        finally:
            signals.image_ready.disconnect(on_ready)

    @staticmethod
    def captured_on_commit() -> Any:
        """Run the on-commit callbacks (the signals) as a committed transaction would."""
        from django.test import TestCase

        return TestCase.captureOnCommitCallbacks(execute=True)
