"""The state machine (imagen_assets.lifecycle) and the values crossing the webhook path."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import pytest
from django.db import transaction
from unit_helpers import make_campaign, make_task

from imagen_assets import lifecycle, signals
from imagen_assets.lifecycle import FileFields
from imagen_assets.models import GeneratedImage, GenerationTask
from imagen_assets.providers import Output, ProviderTask
from imagen_assets.status import (
    IMAGE_STATUS_FOR_TASK,
    OPEN_TASK_STATUSES,
    ImageStatus,
    TaskStatus,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def received(request: pytest.FixtureRequest) -> dict[str, list[dict[str, Any]]]:
    """Every public signal sent during the test, by name, with its arguments."""
    seen: dict[str, list[dict[str, Any]]] = {
        "image_ready": [],
        "image_failed": [],
        "task_failed": [],
    }
    connected = []
    for name, calls in seen.items():

        def receiver(sender: Any, signal: Any, calls: list[Any] = calls, **kwargs: Any) -> None:
            calls.append({"sender": sender, **kwargs})

        getattr(signals, name).connect(receiver, weak=False)
        connected.append((getattr(signals, name), receiver))
    yield seen
    for signal, receiver in connected:
        signal.disconnect(receiver)


def stored(**overrides: Any) -> FileFields:
    values = dict(
        file="imagen/spring/1-0-abc.png",
        thumbnail="imagen/spring/thumbs/1-0-abc.jpg",
        width=20,
        height=10,
        bytes=123,
        sha256="a" * 64,
        content_type="image/png",
    )
    return FileFields(**{**values, **overrides})


class VocabularyTests:
    def test_the_models_use_the_one_vocabulary(self) -> None:
        assert GenerationTask.Status is TaskStatus
        assert GeneratedImage.Status is ImageStatus

    def test_open_statuses_are_exactly_the_non_terminal_ones(self) -> None:
        assert set(OPEN_TASK_STATUSES) == {s for s in TaskStatus if not s.terminal}

    def test_every_ending_of_a_task_says_what_its_images_become(self) -> None:
        endings = {s for s in TaskStatus if s.terminal and s != TaskStatus.SUCCEEDED}
        assert endings <= set(IMAGE_STATUS_FOR_TASK)
        assert all(IMAGE_STATUS_FOR_TASK[s].terminal for s in endings)


class ProviderTaskJsonTests:
    def test_every_field_but_raw_survives_the_json_round_trip(self) -> None:
        task = ProviderTask(
            task_id="t-1",
            status=TaskStatus.SUCCEEDED,
            progress=40,
            outputs=(Output("https://cdn.test/a.png", nsfw=True), Output("https://cdn.test/b")),
            error_code="E1",
            error_message="message",
            cost=Decimal("0.0425"),
            raw={"ignored": True},
        )
        data = task.to_json()
        assert {f.name for f in dataclasses.fields(ProviderTask)} - {"raw"} == set(data)
        assert ProviderTask.from_json(data) == task
        assert ProviderTask.from_json(data).cost == Decimal("0.0425")

    def test_no_cost_stays_no_cost(self) -> None:
        task = ProviderTask(task_id="t", status=TaskStatus.PROCESSING)
        assert ProviderTask.from_json(task.to_json()) == task


class TaskTransitionTests:
    def test_a_task_only_moves_forward(self) -> None:
        task = make_task(make_campaign(), status="processing", provider_task_id="p")

        lifecycle.apply_state(task.pk, ProviderTask("p", TaskStatus.SUBMITTED), counted_poll=True)

        task.refresh_from_db()
        assert (task.status, task.polls) == ("processing", 1)

    def test_failing_an_ended_task_changes_nothing(self, received) -> None:
        task = make_task(make_campaign(), status="succeeded", image_status="succeeded")

        assert lifecycle.fail_task(task.pk, "too late") is False

        task.refresh_from_db()
        assert task.status == "succeeded"
        assert received["task_failed"] == []

    def test_a_failed_task_takes_its_open_images_and_tells_after_commit(
        self, received, django_capture_on_commit_callbacks
    ) -> None:
        task = make_task(make_campaign(), num_images=2, status="submitted", provider_task_id="p")
        with django_capture_on_commit_callbacks(execute=True):
            assert lifecycle.fail_task(task.pk, "refused", "400") is True
            assert received["task_failed"] == []  # not before the commit

        assert [i.status for i in task.images.all()] == ["failed", "failed"]
        assert received["task_failed"] == [
            {
                "sender": GenerationTask,
                "task_id": task.pk,
                "status": TaskStatus.FAILED,
                "reason": "refused",
            }
        ]
        assert sorted(call["image_id"] for call in received["image_failed"]) == sorted(
            task.images.values_list("pk", flat=True)
        )

    def test_a_rolled_back_change_sends_nothing(
        self, received, django_capture_on_commit_callbacks
    ) -> None:
        task = make_task(make_campaign(), status="submitted", provider_task_id="p")
        with (
            django_capture_on_commit_callbacks(execute=True),
            pytest.raises(RuntimeError),
            transaction.atomic(),
        ):
            lifecycle.fail_task(task.pk, "refused")
            raise RuntimeError("rolled back")

        task.refresh_from_db()
        assert task.status == "submitted"
        assert received["task_failed"] == received["image_failed"] == []


class ImageTransitionTests:
    def test_the_first_run_to_finish_an_image_wins_and_only_it_tells(
        self, received, django_capture_on_commit_callbacks
    ) -> None:
        task = make_task(make_campaign(), status="succeeded", provider_task_id="p")
        image = task.images.get()
        with django_capture_on_commit_callbacks(execute=True):
            first = lifecycle.finish_image(
                image.pk, source_url="https://cdn.test/a", nsfw=False, stored=stored()
            )
            second = lifecycle.finish_image(
                image.pk, source_url="https://cdn.test/a", nsfw=False, stored=stored(sha256="b")
            )

        assert (first, second) == (True, False)
        # values(): the files are not on disk, and loading the model would measure them.
        row = GeneratedImage.objects.values("status", "sha256").get(pk=image.pk)
        assert row == {"status": "succeeded", "sha256": "a" * 64}
        assert [call["image"].pk for call in received["image_ready"]] == [image.pk]

    def test_withheld_images_are_their_own_outcome(
        self, received, django_capture_on_commit_callbacks
    ) -> None:
        task = make_task(make_campaign(), num_images=2, status="succeeded", provider_task_id="p")
        first, second = task.images.order_by("index")
        with django_capture_on_commit_callbacks(execute=True):
            assert lifecycle.withhold_images([second.pk], "withheld") == 1
            assert lifecycle.withhold_images([second.pk], "withheld") == 0

        second.refresh_from_db()
        first.refresh_from_db()
        assert (first.status, second.status) == ("queued", "filtered")
        assert [(c["image_id"], c["status"]) for c in received["image_failed"]] == [
            (second.pk, ImageStatus.FILTERED)
        ]
