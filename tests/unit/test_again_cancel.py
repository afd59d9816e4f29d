"""Cancel (imagen_assets.cancels, lifecycle.cancel_task/cancel_images) and Generate again
(imagen_assets.again): what each does, what it refuses, and how a cancel racing the
pipeline ends."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from unit_helpers import WAVE_BASE, MockHTTP, json_response, make_campaign, make_task

from imagen_assets import again, cancels, jobs, lifecycle, providers
from imagen_assets.lifecycle import FileFields
from imagen_assets.models import Activity, GeneratedImage, GenerationRequest, GenerationTask
from imagen_assets.providers import Output, ProviderTask
from imagen_assets.status import CANCELLED_MAY_BILL, CANCELLED_UNBILLED, ImageStatus, TaskStatus

pytestmark = pytest.mark.django_db

WAVE_TASK = "task-wave1775285160b950328499"


@pytest.fixture
def user() -> Any:
    return get_user_model().objects.create_user(username="mia", password="pw")


@pytest.fixture
def provider_http(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., MockHTTP]]:
    """The providers the cancels (and the submit job) build talk to this fake only."""
    made: list[MockHTTP] = []

    def install(*expected: Any) -> MockHTTP:
        http = MockHTTP(*expected)
        made.append(http)

        def build(alias: str | None = None, **kwargs: Any) -> Any:
            return providers.get_provider(alias, client=http.client)

        monkeypatch.setattr(cancels, "get_provider", build)
        monkeypatch.setattr(jobs, "get_provider", build)
        return http

    yield install
    for http in made:
        http.client.close()
        http.assert_done()


def statuses(task: GenerationTask) -> list[str]:
    return list(task.images.order_by("index").values_list("status", flat=True))


def stored_files() -> FileFields:
    return FileFields(
        file="imagen/x.png",
        thumbnail="imagen/x-thumb.png",
        width=64,
        height=48,
        bytes=100,
        sha256="ab" * 32,
        content_type="image/png",
    )


class CancelBeforeTheProviderTests:
    def test_a_task_never_sent_is_cancelled_free_with_its_images(self, user, provider_http) -> None:
        provider_http()  # no call to any provider
        campaign = make_campaign(budget=Decimal("10"))
        task = make_task(campaign, provider="wave", num_images=2)
        report = cancels.cancel(task.images.values_list("pk", flat=True), user=user)

        task.refresh_from_db()
        assert task.status == TaskStatus.CANCELLED
        assert task.error_code == CANCELLED_UNBILLED
        assert task.cost == 0
        assert statuses(task) == [ImageStatus.CANCELLED] * 2
        assert campaign.committed_spend() == 0
        assert "nothing is charged" in report.message
        rows = Activity.objects.filter(verb=Activity.Verb.CANCELLED)
        assert rows.count() == 2
        assert {row.actor_label for row in rows} == {"mia"}

    def test_a_submit_claimed_before_the_cancel_sends_nothing(self, user) -> None:
        campaign = make_campaign()
        task = make_task(campaign, provider="wave")
        lease = timezone.now() + timedelta(minutes=1)
        assert lifecycle.claim_submit(task.pk, lease)
        done = lifecycle.cancel_task(task.pk, "Cancelled.", cancels.Actor.of(user))
        # A claim alone sends nothing (the call would start with mark_submit_started, which
        # now refuses): nothing is billed, and the estimate no longer counts.
        assert done is not None and not done.may_bill
        assert not lifecycle.mark_submit_started(task.pk, lease)
        task.refresh_from_db()
        assert task.cost == 0

    def test_a_task_waiting_for_a_provider_that_is_down_cancels_unbilled(self, user) -> None:
        campaign = make_campaign()
        task = make_task(campaign, provider="wave")
        # What defer_submit leaves: a claim into the future, no call made.
        GenerationTask.objects.filter(pk=task.pk).update(
            submit_lease_until=timezone.now() + timedelta(minutes=5)
        )
        done = lifecycle.cancel_task(task.pk, "Cancelled.", cancels.Actor.of(user))
        assert done is not None and not done.may_bill

    def test_a_call_under_way_may_bill(self, user) -> None:
        campaign = make_campaign()
        task = make_task(campaign, provider="wave")
        lease = timezone.now() + timedelta(minutes=1)
        assert lifecycle.claim_submit(task.pk, lease)
        assert lifecycle.mark_submit_started(task.pk, lease)
        done = lifecycle.cancel_task(task.pk, "Cancelled.", cancels.Actor.of(user))
        assert done is not None and done.may_bill


class CancelAtWaveTests:
    def running(self, num_images: int = 1) -> GenerationTask:
        campaign = make_campaign(budget=Decimal("10"))
        return make_task(
            campaign,
            provider="wave",
            status="processing",
            provider_task_id=WAVE_TASK,
            num_images=num_images,
            image_status="processing",
        )

    def test_wave_cancels_a_task_it_has_not_started_and_nothing_is_charged(
        self, user, provider_http
    ) -> None:
        provider_http(
            (
                "POST",
                f"{WAVE_BASE}/v1/tasks/{WAVE_TASK}/cancel",
                json_response(200, {"task_id": WAVE_TASK, "status": "cancelled"}),
            )
        )
        task = self.running()
        report = cancels.cancel([task.images.get().pk], user=user)
        task.refresh_from_db()
        assert task.status == TaskStatus.CANCELLED
        assert task.error_code == CANCELLED_UNBILLED
        assert task.cost == 0
        assert "cancelled the task before starting it" in report.message
        assert task.campaign.committed_spend() == 0

    def test_a_task_wave_has_started_may_still_be_billed_and_says_so(
        self, user, provider_http
    ) -> None:
        provider_http(
            (
                "POST",
                f"{WAVE_BASE}/v1/tasks/{WAVE_TASK}/cancel",
                json_response(
                    400, {"error": {"message": "processing", "code": "task_not_cancellable"}}
                ),
            )
        )
        task = self.running()
        report = cancels.cancel([task.images.get().pk], user=user)
        task.refresh_from_db()
        assert task.status == TaskStatus.CANCELLED
        assert task.error_code == CANCELLED_MAY_BILL
        assert task.cost is None
        assert "had already started the task and will charge for it (up to $0.04)" in (
            report.message
        )
        # What the provider may still charge stays counted against the budget.
        assert task.campaign.committed_spend() == Decimal("0.0425")
        assert task.images.get().error_message == task.error_message

    def test_wavespeed_cannot_cancel_so_we_stop_waiting(self, user, provider_http) -> None:
        provider_http()  # WaveSpeed has no cancel endpoint: no call
        campaign = make_campaign()
        task = make_task(campaign, status="processing", provider_task_id="ws-1")
        report = cancels.cancel([task.images.get().pk], user=user)
        task.refresh_from_db()
        assert task.error_code == CANCELLED_MAY_BILL
        assert "cannot cancel a task it has been given" in report.message

    def test_a_late_result_after_the_cancel_stores_nothing_and_bills_nothing_as_ours(
        self, user, provider_http
    ) -> None:
        provider_http(
            (
                "POST",
                f"{WAVE_BASE}/v1/tasks/{WAVE_TASK}/cancel",
                json_response(400, {"error": {"message": "x", "code": "task_not_cancellable"}}),
            )
        )
        task = self.running()
        cancels.cancel([task.images.get().pk], user=user)
        late = ProviderTask(
            task_id=WAVE_TASK,
            status=TaskStatus.SUCCEEDED,
            outputs=(Output(url="https://cdn.test/a.png"),),
            cost=Decimal("0.0425"),
        )
        lifecycle.apply_state(task.pk, late, counted_poll=True)
        task.refresh_from_db()
        assert task.status == TaskStatus.CANCELLED
        assert task.cost is None and task.outputs == []
        assert jobs.complete(task.pk).did is jobs.Did.SKIPPED
        assert statuses(task) == [ImageStatus.CANCELLED]


class CancelRacesTests:
    def test_a_completion_first_makes_the_cancel_a_refusal_that_changes_nothing(
        self, user, provider_http
    ) -> None:
        provider_http()
        campaign = make_campaign()
        task = make_task(campaign, status="processing", provider_task_id="ws-2")
        done = ProviderTask(
            task_id="ws-2", status=TaskStatus.SUCCEEDED, outputs=(Output(url="https://cdn.test/a"),)
        )
        lifecycle.apply_state(task.pk, done, counted_poll=True)
        image = task.images.get()
        report = cancels.cancel([image.pk], user=user)
        assert report.cancelled == []
        assert "already made and paid for" in report.refused[0]
        image.refresh_from_db()
        assert image.is_open  # still to be stored
        assert lifecycle.finish_image(image.pk, source_url="u", nsfw=False, stored=stored_files())

    def test_an_image_cancelled_first_is_never_stored(self, user) -> None:
        campaign = make_campaign()
        task = make_task(campaign, status="processing", provider_task_id="ws-3", num_images=2)
        first, second = task.images.order_by("index")
        assert lifecycle.cancel_images([first.pk], "Cancelled.", cancels.Actor.of(user)) == [
            first.pk
        ]
        task.refresh_from_db()
        assert task.status == TaskStatus.PROCESSING  # the other image is still wanted
        # The completion that follows stores only the other image; the loser's files are
        # the caller's to delete (finish_image says so by returning False).
        assert not lifecycle.finish_image(
            first.pk, source_url="u", nsfw=False, stored=stored_files()
        )
        assert lifecycle.finish_image(second.pk, source_url="u", nsfw=False, stored=stored_files())
        assert statuses(task) == [ImageStatus.CANCELLED, ImageStatus.SUCCEEDED]

    def test_cancelling_an_ended_task_changes_nothing(self, user) -> None:
        task = make_task(make_campaign(), status="failed", image_status="failed")
        assert lifecycle.cancel_task(task.pk, "x", cancels.Actor.of(user)) is None
        report = cancels.cancel(task.images.values_list("pk", flat=True), user=user)
        assert report.cancelled == [] and "has already ended" in report.refused[0]
        assert not Activity.objects.filter(verb=Activity.Verb.CANCELLED).exists()

    def test_some_images_of_a_task_leave_the_task_going_and_say_it_is_billed_whole(
        self, user, provider_http
    ) -> None:
        provider_http()
        task = make_task(
            make_campaign(), status="processing", provider_task_id="ws-4", num_images=3
        )
        first = task.images.order_by("index").first()
        report = cancels.cancel([first.pk], user=user)
        assert report.cancelled == [first.pk]
        assert "bills the task as a whole" in report.message
        assert statuses(task) == [ImageStatus.CANCELLED, "queued", "queued"]


class AgainTests:
    def made(self, *, status: str = "succeeded", num_images: int = 1, index: int = 0) -> Any:
        campaign = make_campaign(brand_prompt="Pastel palette.")
        request = GenerationRequest.objects.create(
            campaign=campaign, prompt="A kite over a meadow", count=num_images
        )
        task = make_task(
            campaign,
            provider="wave",
            status=status,
            num_images=num_images,
            image_status="failed" if status == "failed" else "succeeded",
            seed=1234,
            request=request,
        )
        GenerationTask.objects.filter(pk=task.pk).update(
            prompt="A kite over a meadow\n\nPastel palette.", aspect_ratio="16:9"
        )
        return GeneratedImage.objects.select_related("task__request", "campaign").get(
            task=task, index=index
        )

    def test_retry_keeps_the_brands_style_preset(self) -> None:
        from imagen_assets.models import Brand, StylePreset

        image = self.made()
        brand = Brand.objects.create(name="Meadow")
        preset = StylePreset.objects.create(brand=brand, name="Studio", prompt="studio light")
        image.campaign.brand = brand
        image.campaign.save()
        GenerationRequest.objects.filter(pk=image.task.request_id).update(style_preset=preset)
        image = GeneratedImage.objects.select_related("task__request", "campaign").get(pk=image.pk)
        made = again.prefill(image, "retry")
        assert made.initial["style"] == preset.pk
        assert made.request_kwargs()["style_preset"] == preset
        assert ("Style preset", "Studio") in made.carried

    def test_retry_of_a_failed_task_asks_for_the_whole_task_with_its_seed(self) -> None:
        image = self.made(status="failed", num_images=3)
        made = again.prefill(image, "retry")
        assert made.initial == {
            "prompt": "A kite over a meadow",
            "count": 3,
            "aspect_ratio": "16:9",
            "provider": "wave",
            "seed": 1234,
            "negative_prompt": "",
        }
        assert made.origin == GenerationRequest.Origin.RETRY
        assert ("Seed", "1234") in made.carried

    def test_retry_of_a_later_image_of_a_task_is_one_image_and_says_the_seed_is_shared(
        self,
    ) -> None:
        image = self.made(num_images=4, index=2)
        made = again.prefill(image, "retry")
        assert made.initial["count"] == 1
        assert any("number 3 of 4" in note for note in made.notes)

    def test_more_like_this_keeps_the_prompt_with_new_seeds(self) -> None:
        made = again.prefill(self.made(num_images=2), "more")
        assert made.initial["seed"] is None
        assert made.initial["prompt"] == "A kite over a meadow"
        assert made.origin == GenerationRequest.Origin.MORE_LIKE_THIS

    def test_same_seed_elsewhere_needs_another_provider(self) -> None:
        image = self.made()
        made = again.prefill(image, "other", usable={"wave": None, "wavespeed": None})
        assert made.initial["provider"] == "wavespeed"
        assert made.initial["seed"] == 1234
        with pytest.raises(again.AgainError):
            again.prefill(image, "other", usable={"wave": None})
        with pytest.raises(again.AgainError):
            again.prefill(image, "sideways")

    def test_the_prompt_as_written_stays_with_the_task_without_its_request(self) -> None:
        image = self.made()
        GenerationTask.objects.filter(pk=image.task_id).update(request=None)
        image = GeneratedImage.objects.select_related("task", "campaign").get(pk=image.pk)
        assert image.task.prompt_as_written() == "A kite over a meadow"


class CommandLineTests:
    def test_imagen_generate_again_records_the_origin(self, enqueued) -> None:
        from django.core.management import call_command

        image = AgainTests().made(num_images=2)
        call_command("imagen_generate", "--again", str(image.pk), "--more", stdout=io.StringIO())
        made = GenerationRequest.objects.latest("pk")
        assert made.origin == GenerationRequest.Origin.MORE_LIKE_THIS
        assert made.source_image_id == image.pk
        assert made.prompt == "A kite over a meadow"

    def test_imagen_cancel_cancels_and_refuses_a_finished_image(self, user) -> None:
        from django.contrib.auth.models import Permission
        from django.core.management import CommandError, call_command

        user.user_permissions.add(Permission.objects.get(codename="generate_images"))
        task = make_task(make_campaign(), provider="wave")
        done = make_task(task.campaign, status="failed", image_status="failed")
        out, err = io.StringIO(), io.StringIO()
        with pytest.raises(CommandError):
            call_command(
                "imagen_cancel",
                str(task.images.get().pk),
                str(done.images.get().pk),
                "--user",
                "mia",
                stdout=out,
                stderr=err,
            )
        assert "nothing is charged" in out.getvalue()
        assert "has already ended" in err.getvalue()
        assert statuses(task) == [ImageStatus.CANCELLED]

    def test_imagen_cancel_task_cancels_what_is_open_and_passes_over_the_ready(self, user) -> None:
        from django.contrib.auth.models import Permission
        from django.core.management import call_command

        user.user_permissions.add(Permission.objects.get(codename="generate_images"))
        task = make_task(make_campaign(), provider="wave", num_images=2)
        ready, still = task.images.order_by("index")
        # One image of the task stored already, as the admin would show it: no refusal.
        GeneratedImage.objects.filter(pk=ready.pk).update(status=ImageStatus.SUCCEEDED)
        out = io.StringIO()
        call_command("imagen_cancel", str(still.pk), "--task", "--user", "mia", stdout=out)
        assert statuses(task) == [ImageStatus.SUCCEEDED, ImageStatus.CANCELLED]
