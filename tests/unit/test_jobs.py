"""The RQ jobs against fake providers (both wire shapes) and a fake CDN; queue recorded."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any
from unittest import mock

import httpx
import pytest
from django.core.files.storage import default_storage
from django.utils import timezone
from PIL import Image
from unit_helpers import (
    WAVE_BASE,
    WAVE_KEY,
    WS_BASE,
    WS_KEY,
    FakeCDN,
    fixture,
    image_bytes,
    json_response,
    make_campaign,
    make_task,
)

from imagen_assets import conf, imaging, ingest, jobs, lifecycle, providers, queueing
from imagen_assets.downloads import Downloaded, DownloadError
from imagen_assets.jobs import Did, Outcome, Why
from imagen_assets.models import GeneratedImage, GenerationTask, WebhookEvent

pytestmark = pytest.mark.django_db


def pixels(data: bytes) -> bytes:
    return Image.open(io.BytesIO(data)).tobytes()


WS_ID = "8a1b2c3d4e5f40718293a4b5c6d7e8f9"
WAVE_ID = "task-wave1789004688b950049238"


# -- the two wire shapes ---------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """One provider's URLs and bodies, so a test can run against both."""

    alias: str
    task_id: str
    submit_url: str
    status_url: str

    def submitted(self) -> httpx.Response:
        if self.alias == "wave":
            return json_response(202, {**fixture("wave/submit_queued.json"), "task_id": WAVE_ID})
        return json_response(200, fixture("wavespeed/submit_created.json"))

    def state(
        self, status: str, urls: tuple[str, ...] = (), *, progress: Any = None, **extra: Any
    ) -> httpx.Response:
        """A status read: ``status`` is the provider's own word for it."""
        if self.alias == "wave":
            data: dict[str, Any] = {
                "task_id": WAVE_ID,
                "status": status,
                "model": "imagen-4.0",
                "progress": progress if progress is not None else "",
                "created_at": 1789004688,
                **extra,
            }
            if urls:
                data["result"] = {"images": [{"url": [url]} for url in urls]}
            return json_response(200, data)
        envelope = fixture("wavespeed/result_processing.json")
        extra.setdefault("has_nsfw_contents", [False] * len(urls))
        envelope["data"].update(status=status, outputs=list(urls), **extra)
        return json_response(200, envelope)

    def done(self, *urls: str) -> httpx.Response:
        return (
            self.state("completed", urls, cost=21250)
            if self.alias == "wave"
            else self.state("completed", urls)
        )

    def failed(self) -> tuple[httpx.Response, str, str]:
        """(answer, expected error message, expected error code)."""
        if self.alias == "wave":
            data = {**fixture("wave/status_failed.json"), "task_id": WAVE_ID}
            return json_response(200, data), data["error"]["message"], "upstream_bad_request"
        return (
            json_response(200, fixture("wavespeed/result_failed_moderation.json")),
            "Content is filtered due to unknown reasons",
            "1200",
        )


WAVE = Shape("wave", WAVE_ID, f"{WAVE_BASE}/v1/tasks", f"{WAVE_BASE}/v1/tasks/{WAVE_ID}")
WAVESPEED = Shape(
    "wavespeed",
    WS_ID,
    f"{WS_BASE}/api/v3/wavespeed-ai/imagen4",
    f"{WS_BASE}/api/v3/predictions/{WS_ID}/result",
)
both_shapes = pytest.mark.parametrize("shape", [WAVE, WAVESPEED], ids=["wave", "wavespeed"])


@pytest.fixture
def campaign():
    return make_campaign("spring")


def queued_task(campaign, shape: Shape, num_images: int = 1, **fields) -> GenerationTask:
    return make_task(campaign, provider=shape.alias, num_images=num_images, **fields)


def running_task(campaign, shape: Shape, num_images: int = 1, **fields) -> GenerationTask:
    fields.setdefault("status", "submitted")
    fields.setdefault("submitted_at", timezone.now())
    return make_task(
        campaign,
        provider=shape.alias,
        num_images=num_images,
        provider_task_id=shape.task_id,
        **fields,
    )


def reload(task: GenerationTask) -> GenerationTask:
    return GenerationTask.objects.get(pk=task.pk)


def images_of(task: GenerationTask) -> list[GeneratedImage]:
    return list(GeneratedImage.objects.filter(task=task).order_by("index"))


def stored_files(tmp_path) -> list[str]:
    media = tmp_path / "media"
    return sorted(str(p.relative_to(media)) for p in media.rglob("*") if p.is_file())


def serve(cdn: FakeCDN, *paths_and_formats: tuple[str, str, tuple[int, int]]) -> list[str]:
    urls = []
    for path, fmt, size in paths_and_formats:
        cdn.files[path] = image_bytes(fmt, size=size)
        urls.append(cdn.url(path))
    return urls


# -- submit ----------------------------------------------------------------------------------


def retry_is_due(task: Any) -> None:
    """Move the clock past the retry delay: the lease the failed attempt left has expired."""
    type(task).objects.filter(pk=task.pk).update(
        submit_lease_until=timezone.now() - timedelta(seconds=1)
    )


class SubmitJobTests:
    @both_shapes
    def test_saves_provider_task_id_before_polling(self, campaign, shape, use_http, enqueued):
        task = queued_task(campaign, shape)
        use_http(("POST", shape.submit_url, shape.submitted()))

        outcome = jobs.submit(task.pk)

        task = reload(task)
        assert outcome == Outcome(Did.SUBMITTED, detail=shape.task_id)
        assert task.provider_task_id == shape.task_id
        assert task.status == "submitted"
        assert task.submitted_at is not None
        assert task.submit_lease_until is None
        assert task.attempts == 1
        # No history yet: the first read when a task is expected to be done by default.
        first = 0.9 * conf.get("POLL_EXPECTED_SECONDS")
        assert [(c.func, c.args, c.delay) for c in enqueued] == [(jobs.poll, (task.pk,), first)]

    def test_wave_submit_sends_the_key_and_the_idempotency_key(self, campaign, use_http, enqueued):
        task = queued_task(campaign, WAVE)
        http = use_http(("POST", WAVE.submit_url, WAVE.submitted()))

        jobs.submit(task.pk)

        request = http.requests[0]
        assert request.headers["Authorization"] == f"Bearer {WAVE_KEY}"
        assert request.headers["Idempotency-Key"] == str(task.idempotency_key)

    def test_wavespeed_submit_sends_the_key(self, campaign, use_http, enqueued):
        task = queued_task(campaign, WAVESPEED)
        http = use_http(("POST", WAVESPEED.submit_url, WAVESPEED.submitted()))

        jobs.submit(task.pk)

        assert http.requests[0].headers["Authorization"] == f"Bearer {WS_KEY}"

    @both_shapes
    def test_a_second_run_is_a_no_op(self, campaign, shape, use_http, enqueued):
        task = queued_task(campaign, shape)
        use_http(("POST", shape.submit_url, shape.submitted()))  # exactly one request allowed

        jobs.submit(task.pk)
        retry_is_due(task)
        outcome = jobs.submit(task.pk)

        assert outcome.did is Did.SKIPPED
        assert reload(task).attempts == 1
        assert len(enqueued) == 1

    def test_a_run_while_another_holds_the_lease_is_a_no_op(self, campaign, use_http, enqueued):
        task = queued_task(
            campaign, WAVESPEED, submit_lease_until=timezone.now() + timedelta(minutes=1)
        )
        use_http()

        assert jobs.submit(task.pk).did is Did.SKIPPED
        assert enqueued == []

    def test_an_expired_lease_is_taken_over(self, campaign, use_http, enqueued):
        task = queued_task(
            campaign, WAVESPEED, submit_lease_until=timezone.now() - timedelta(seconds=1)
        )
        use_http(("POST", WAVESPEED.submit_url, WAVESPEED.submitted()))

        jobs.submit(task.pk)

        assert reload(task).provider_task_id == WS_ID

    @both_shapes
    def test_rate_limit_keeps_the_task_queued_and_retries_after_retry_after(
        self, campaign, shape, use_http, enqueued
    ):
        body = (
            fixture("wave/error_429_quota_window.json")
            if shape is WAVE
            else fixture("wavespeed/error_429_error_code.json")
        )
        task = queued_task(campaign, shape)
        use_http(("POST", shape.submit_url, json_response(429, body, {"Retry-After": "7"})))

        outcome = jobs.submit(task.pk)

        task = reload(task)
        assert outcome.did is Did.RETRYING
        assert task.status == "queued"
        assert task.provider_task_id == ""
        # Held until the retry is due, so nothing submits before Retry-After.
        assert task.submit_lease_until > timezone.now() + timedelta(seconds=5)
        assert "HTTP 429" in task.error_message
        assert "attempt 1 of 6; retrying in" in task.error_message
        assert {image.status for image in images_of(task)} == {"queued"}
        (call,) = enqueued
        assert (call.func, call.args) == (jobs.submit, (task.pk,))
        assert call.delay >= 7

    def test_fails_after_submit_max_attempts(self, campaign, use_http, enqueued, settings):
        settings.IMAGEN_ASSETS = {**settings.IMAGEN_ASSETS, "SUBMIT_MAX_ATTEMPTS": 2}
        task = queued_task(campaign, WAVESPEED, num_images=2)
        busy = fixture("wavespeed/error_429_error_code.json")
        use_http(
            ("POST", WAVESPEED.submit_url, json_response(429, busy)),
            ("POST", WAVESPEED.submit_url, json_response(429, busy)),
        )

        jobs.submit(task.pk)
        retry_is_due(task)
        outcome = jobs.submit(task.pk)

        task = reload(task)
        assert outcome == Outcome(Did.FAILED)
        assert task.status == "failed"
        assert task.attempts == 2
        assert "rate limit exceeded, slow down" in task.error_message
        assert task.error_code == "rate_limited"
        assert task.cost == 0
        assert [image.status for image in images_of(task)] == ["failed", "failed"]
        assert [c.func for c in enqueued] == [jobs.submit]

    @both_shapes
    def test_a_bad_request_fails_at_once_with_the_providers_message(
        self, campaign, shape, use_http, enqueued
    ):
        if shape is WAVE:
            body = fixture("wave/error_400_invalid_aspect_ratio.json")
            message, code = body["error"]["message"], "invalid_aspect_ratio"
        else:
            body = fixture("wavespeed/error_400_base64_webhook.json")
            message, code = body["error"], ""
        task = queued_task(campaign, shape)
        use_http(("POST", shape.submit_url, json_response(400, body)))

        assert jobs.submit(task.pk) == Outcome(Did.FAILED)

        task = reload(task)
        assert task.status == "failed"
        assert message in task.error_message
        assert "HTTP 400" in task.error_message
        assert task.error_code == (code or "400")
        assert images_of(task)[0].status == "failed"
        assert message in images_of(task)[0].error_message
        assert enqueued == []

    @both_shapes
    def test_an_api_key_echoed_by_the_provider_is_never_recorded_or_logged(
        self, campaign, shape, use_http, enqueued, caplog
    ):
        key = WAVE_KEY if shape is WAVE else WS_KEY
        body = (
            {"error": {"message": f"invalid key {key}", "code": "invalid_api_key"}}
            if shape is WAVE
            else {"code": 401, "message": f"invalid authentication: {key}"}
        )
        task = queued_task(campaign, shape)
        use_http(("POST", shape.submit_url, json_response(401, body)))

        jobs.submit(task.pk)

        task = reload(task)
        assert task.status == "failed"
        assert "[redacted]" in task.error_message
        assert key not in task.error_message + task.error_code
        assert key not in images_of(task)[0].error_message
        assert key not in caplog.text

    def test_an_unanswered_wavespeed_submit_is_failed_not_retried(
        self, campaign, use_http, enqueued
    ):
        task = queued_task(campaign, WAVESPEED)
        use_http(("POST", WAVESPEED.submit_url, httpx.ReadTimeout("no answer")))

        assert jobs.submit(task.pk) == Outcome(Did.FAILED, Why.AMBIGUOUS)

        task = reload(task)
        assert task.status == "failed"
        assert task.error_code == "ambiguous"
        assert "may or may not have reached the provider" in task.error_message
        assert "dashboard" in task.error_message
        assert images_of(task)[0].status == "failed"
        assert enqueued == []

    def test_a_wavespeed_gateway_timeout_on_submit_is_failed_not_retried(
        self, campaign, use_http, enqueued
    ):
        task = queued_task(campaign, WAVESPEED)
        use_http(("POST", WAVESPEED.submit_url, httpx.Response(504, text="Gateway Time-out")))

        assert jobs.submit(task.pk) == Outcome(Did.FAILED, Why.AMBIGUOUS)

        task = reload(task)
        assert (task.status, task.error_code, task.attempts) == ("failed", "ambiguous", 1)
        assert task.error_message.startswith("WaveSpeed AI: HTTP 504: Gateway Time-out.")
        assert enqueued == []

    def test_an_unanswered_wave_submit_is_retried_with_the_same_idempotency_key(
        self, campaign, use_http, enqueued
    ):
        task = queued_task(campaign, WAVE)
        http = use_http(
            ("POST", WAVE.submit_url, httpx.ReadTimeout("no answer")),
            ("POST", WAVE.submit_url, WAVE.submitted()),
        )

        assert jobs.submit(task.pk).did is Did.RETRYING
        assert reload(task).status == "queued"
        assert [c.func for c in enqueued] == [jobs.submit]

        retry_is_due(task)
        jobs.submit(task.pk)

        assert reload(task).provider_task_id == WAVE_ID
        keys = {request.headers["Idempotency-Key"] for request in http.requests}
        assert keys == {str(task.idempotency_key)}

    def test_a_refused_connection_to_wavespeed_is_retried(self, campaign, use_http, enqueued):
        task = queued_task(campaign, WAVESPEED)
        use_http(("POST", WAVESPEED.submit_url, httpx.ConnectError("refused")))

        assert jobs.submit(task.pk).did is Did.RETRYING
        assert reload(task).error_code == "network"
        assert [c.func for c in enqueued] == [jobs.submit]

    def test_an_unreadable_accepted_wavespeed_submit_is_not_retried(
        self, campaign, use_http, enqueued
    ):
        task = queued_task(campaign, WAVESPEED)
        use_http(("POST", WAVESPEED.submit_url, httpx.Response(200, text="upstream hiccup")))

        jobs.submit(task.pk)

        assert [c.func for c in enqueued if c.func is jobs.submit] == []
        assert reload(task).status == "failed"

    def test_a_timeout_fetching_the_webhook_secret_is_not_an_ambiguous_submit(
        self, campaign, enqueued, settings, monkeypatch
    ):
        config = settings.IMAGEN_ASSETS
        config["PROVIDERS"]["wavespeed"]["OPTIONS"]["WEBHOOK_SECRET"] = ""
        config["WEBHOOK_BASE_URL"] = "https://marketing.example"
        settings.IMAGEN_ASSETS = config
        task = queued_task(campaign, WAVESPEED)

        def handle(request: httpx.Request) -> httpx.Response:
            if request.method == "GET" and request.url.path == "/api/v3/webhook/secret":
                raise httpx.ReadTimeout("slow")
            if request.method == "POST" and request.url.path == "/api/v3/wavespeed-ai/imagen4":
                return WAVESPEED.submitted()  # a fix may go on and submit: that is fine
            raise AssertionError(f"unexpected request {request.method} {request.url}")

        client = httpx.Client(transport=httpx.MockTransport(handle))
        monkeypatch.setattr(
            jobs,
            "get_provider",
            lambda alias=None, **kwargs: providers.get_provider(alias, client=client),
        )

        jobs.submit(task.pk)

        task = reload(task)
        assert task.status in ("queued", "submitted")
        assert task.error_code != "ambiguous"

    def test_a_task_finished_at_submit_is_completed_at_once(
        self, campaign, use_http, enqueued, cdn
    ):
        task = queued_task(campaign, WAVE)
        urls = serve(cdn, ("/now.png", "PNG", (16, 16)))
        use_http(("POST", WAVE.submit_url, WAVE.done(*urls)))

        assert jobs.submit(task.pk) == Outcome(
            Did.SUBMITTED, detail=WAVE_ID, then=Outcome(Did.STORED, stored=1)
        )

        task = reload(task)
        assert (task.provider_task_id, task.status) == (WAVE_ID, "succeeded")
        assert images_of(task)[0].status == "succeeded"
        assert enqueued == []

    def test_an_unknown_provider_fails_the_task(self, campaign, enqueued):
        task = make_task(campaign, provider="retired")

        assert jobs.submit(task.pk) == Outcome(Did.FAILED, Why.CONFIGURATION)

        task = reload(task)
        assert task.status == "failed"
        assert task.error_code == "config"
        assert "'retired' is not configured" in task.error_message
        assert enqueued == []

    def test_with_webhooks_on_wavespeed_gets_the_webhook_url(
        self, campaign, use_http, enqueued, settings
    ):
        settings.IMAGEN_ASSETS = {
            **settings.IMAGEN_ASSETS,
            "WEBHOOK_BASE_URL": "https://marketing.example/",
        }
        task = queued_task(campaign, WAVESPEED)
        webhook = "https://marketing.example/imagen/webhooks/wavespeed/"
        http = use_http(
            ("POST", f"{WAVESPEED.submit_url}?webhook={webhook}", WAVESPEED.submitted())
        )

        jobs.submit(task.pk)

        assert http.requests[0].url.params["webhook"] == (
            "https://marketing.example/imagen/webhooks/wavespeed/"
        )

    def test_with_webhooks_on_wave_gets_a_tokened_url_that_is_not_recorded(
        self, campaign, use_http, enqueued, settings
    ):
        settings.IMAGEN_ASSETS = {
            **settings.IMAGEN_ASSETS,
            "WEBHOOK_BASE_URL": "https://marketing.example",
        }
        task = queued_task(campaign, WAVE)
        http = use_http(("POST", WAVE.submit_url, WAVE.submitted()))

        jobs.submit(task.pk)

        sent = http.requests[0].read()
        url = f"https://marketing.example/imagen/webhooks/wave/{task.callback_token}/"
        assert url.encode() in sent
        recorded = reload(task).request_body
        assert recorded["callback_url"] == "https://marketing.example/imagen/webhooks/wave/<token>/"
        assert task.callback_token not in str(recorded)

    def test_a_task_already_running_at_submit_is_recorded_as_running(
        self, campaign, use_http, enqueued
    ):
        task = queued_task(campaign, WAVE)
        use_http(("POST", WAVE.submit_url, WAVE.state("processing", progress="10%")))

        jobs.submit(task.pk)

        task = reload(task)
        assert task.status == "processing"
        assert task.progress == 10
        assert [c.func for c in enqueued] == [jobs.poll]


# -- poll ------------------------------------------------------------------------------------


def crash(request: httpx.Request) -> httpx.Response:
    """The worker dies mid-call: an exception no provider code expects escapes the job."""
    raise RuntimeError("work-horse killed")


def later(seconds: float):
    """Patch the clock ``seconds`` ahead (the reconciler and the next job run then)."""
    from unittest import mock

    return mock.patch(
        "django.utils.timezone.now", return_value=timezone.now() + timedelta(seconds=seconds)
    )


class InterruptedSubmitTests:
    def test_a_wavespeed_submit_cut_off_mid_call_is_failed_not_repeated(
        self, campaign, use_http, enqueued
    ):
        task = queued_task(campaign, WAVESPEED)
        http = use_http(("POST", WAVESPEED.submit_url, crash))
        with pytest.raises(RuntimeError):
            jobs.submit(task.pk)
        assert reload(task).status == "queued"  # the job died; the row says nothing yet

        with later(1000):  # the lease has run out: the reconciler queues a submit again
            assert jobs.reconcile()["submit"] == 1
            assert jobs.submit(task.pk) == Outcome(Did.FAILED, Why.INTERRUPTED)

        assert len(http.requests) == 1  # never a second, separately billed prediction
        task = reload(task)
        assert (task.status, task.error_code) == ("failed", "ambiguous")
        assert "stopped without an answer" in task.error_message
        assert images_of(task)[0].status == "failed"

    def test_a_crash_before_the_call_does_not_count_as_an_unknown_outcome(
        self, campaign, use_http, enqueued, monkeypatch
    ):
        task = queued_task(campaign, WAVESPEED)
        http = use_http(("POST", WAVESPEED.submit_url, WAVESPEED.submitted()))

        def crash_before(*args):
            raise RuntimeError("killed before sending")

        with monkeypatch.context() as patch:
            patch.setattr(jobs, "callback_url", crash_before)
            with pytest.raises(RuntimeError):
                jobs.submit(task.pk)
        assert reload(task).submit_started_at is None

        with later(1000):
            assert jobs.submit(task.pk) == Outcome(Did.SUBMITTED, detail=WS_ID)
        assert len(http.requests) == 1

    def test_a_wave_submit_cut_off_mid_call_is_repeated_with_the_same_key(
        self, campaign, use_http, enqueued
    ):
        task = queued_task(campaign, WAVE)
        http = use_http(
            ("POST", WAVE.submit_url, crash), ("POST", WAVE.submit_url, WAVE.submitted())
        )
        with pytest.raises(RuntimeError):
            jobs.submit(task.pk)

        with later(1000):
            assert jobs.submit(task.pk) == Outcome(Did.SUBMITTED, detail=WAVE_ID)

        first, second = http.requests
        assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
        task = reload(task)
        assert (task.status, task.attempts, task.submit_started_at) == ("submitted", 2, None)

    def test_crashing_attempts_end_after_the_attempt_limit(
        self, campaign, use_http, enqueued, settings
    ):
        settings.IMAGEN_ASSETS = {**settings.IMAGEN_ASSETS, "SUBMIT_MAX_ATTEMPTS": 3}
        task = queued_task(campaign, WAVE)
        http = use_http(*[("POST", WAVE.submit_url, crash)] * 3)
        for attempt in range(3):
            with later(1000 * attempt), pytest.raises(RuntimeError):
                jobs.submit(task.pk)

        with later(5000):
            assert jobs.submit(task.pk) == Outcome(Did.FAILED, Why.TOO_MANY_ATTEMPTS)

        assert len(http.requests) == 3
        task = reload(task)
        assert (task.status, task.error_code) == ("failed", "attempts")
        assert task.error_message == "Gave up after 3 attempts to submit to Wave."

    def test_an_unreadable_answer_to_a_wavespeed_submit_is_not_repeated(
        self, campaign, use_http, enqueued
    ):
        task = queued_task(campaign, WAVESPEED)
        broken = httpx.Response(
            200,
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
            stream=httpx.ByteStream(b"not gzip at all"),
        )
        use_http(("POST", WAVESPEED.submit_url, broken))

        assert jobs.submit(task.pk) == Outcome(Did.FAILED, Why.AMBIGUOUS)
        assert "could not be read (DecodingError)" in reload(task).error_message

    def test_the_claim_outlasts_the_providers_own_deadline(
        self, campaign, use_http, enqueued, settings
    ):
        # Two calls (the webhook secret, the submit), each within its total deadline (P5).
        settings.IMAGEN_ASSETS["PROVIDERS"]["wavespeed"]["OPTIONS"]["DEADLINE"] = 180
        task = queued_task(campaign, WAVESPEED)
        leases = []

        def slow(request: httpx.Request) -> httpx.Response:
            leases.append(reload(task).submit_lease_until - timezone.now())
            return WAVESPEED.submitted()

        use_http(("POST", WAVESPEED.submit_url, slow))
        jobs.submit(task.pk)

        assert leases[0] > timedelta(seconds=2 * 180)

    def test_a_run_that_lost_its_claim_does_not_move_the_task(
        self, campaign, use_http, enqueued, caplog
    ):
        task = queued_task(campaign, WAVESPEED)

        def meanwhile_failed(request: httpx.Request) -> httpx.Response:
            # While this call was slow, another run took over and the task failed.
            lifecycle.fail_task(task.pk, "failed by the other run", "other")
            return WAVESPEED.submitted()

        use_http(("POST", WAVESPEED.submit_url, meanwhile_failed))

        assert jobs.submit(task.pk) == Outcome(Did.SKIPPED, Why.CLAIM_LOST)

        task = reload(task)
        assert (task.status, task.provider_task_id) == ("failed", "")
        assert WS_ID in caplog.text and "orphan" in caplog.text
        assert enqueued == []


def poll_now(task: GenerationTask) -> Outcome:
    """The scheduled read, run when it is due."""
    GenerationTask.objects.filter(pk=task.pk).update(next_poll_at=None)
    return jobs.poll(task.pk)


class PollJobTests:
    def test_a_read_queued_before_the_next_one_is_due_does_nothing(
        self, campaign, use_http, enqueued
    ):
        task = running_task(
            campaign, WAVESPEED, next_poll_at=timezone.now() + timedelta(seconds=600)
        )
        use_http()  # no provider call

        assert jobs.poll(task.pk) == Outcome(Did.SKIPPED, Why.NOT_DUE)
        assert enqueued == []  # and no second chain

    def test_a_read_rq_released_up_to_a_second_early_still_reads(
        self, campaign, use_http, enqueued
    ):
        # RQ keeps due times in whole seconds: a read due at 12.9 s is queued at 12.0 s.
        # Refused as early, it would end the task's chain of reads (the flaky worker-crash
        # test: nothing read the task again until the reconciler did).
        task = running_task(
            campaign, WAVESPEED, next_poll_at=timezone.now() + timedelta(seconds=0.95)
        )
        use_http(("GET", WAVESPEED.status_url, WAVESPEED.state("processing")))

        assert jobs.poll(task.pk) == Outcome(Did.READ, detail="processing")
        assert [c.name for c in enqueued] == ["poll"]  # the chain goes on

    def test_a_webhooks_re_read_is_never_held_back(self, campaign, use_http, enqueued):
        task = running_task(
            campaign, WAVESPEED, next_poll_at=timezone.now() + timedelta(seconds=600)
        )
        use_http(("GET", WAVESPEED.status_url, WAVESPEED.state("processing")))

        assert jobs.poll(task.pk, reschedule=False) == Outcome(Did.READ, detail="processing")

    def test_a_long_retry_after_holds_off_the_reconciler(
        self, campaign, use_http, enqueued, settings
    ):
        task = running_task(campaign, WAVESPEED)
        busy = json_response(429, {"code": 429, "message": "slow down"}, {"Retry-After": "600"})
        use_http(("GET", WAVESPEED.status_url, busy))

        jobs.poll(task.pk)

        (call,) = enqueued
        assert call.delay == 600
        assert reload(task).next_poll_at > timezone.now() + timedelta(seconds=590)
        with later(300):  # stale by RECONCILE_AFTER, but its read is still scheduled
            assert jobs.reconcile()["poll"] == 0
        with later(700):  # the scheduled read was lost: now the reconciler steps in
            assert jobs.reconcile()["poll"] == 1

    def test_processing_updates_progress_and_reschedules(self, campaign, use_http, enqueued):
        task = running_task(
            campaign, WAVE, num_images=2, submitted_at=timezone.now() - timedelta(seconds=9)
        )
        body = {**fixture("wave/status_processing_progress_percent.json"), "task_id": WAVE_ID}
        use_http(("GET", WAVE.status_url, json_response(200, body)))

        assert jobs.poll(task.pk) == Outcome(Did.READ, detail="processing")

        task = reload(task)
        assert task.status == "processing"
        assert task.progress == 45
        assert task.polls == 1
        assert [image.status for image in images_of(task)] == ["processing", "processing"]
        # 45 % done after 9 s: read again when the other 55 % should be, in about 11 s.
        assert [(c.func, c.args) for c in enqueued] == [(jobs.poll, (task.pk,))]
        assert enqueued[0].delay == pytest.approx(9 * 55 / 45, abs=0.2)

    def test_wavespeed_processing_reschedules_with_backoff(self, campaign, use_http, enqueued):
        # Expected after 6 s (the default), and 20 s late: read again in (1.5 - 1) x 20 s.
        sent = timezone.now() - timedelta(seconds=26)
        task = running_task(campaign, WAVESPEED, polls=3, submitted_at=sent)
        use_http(("GET", WAVESPEED.status_url, WAVESPEED.state("processing")))

        jobs.poll(task.pk)

        assert reload(task).status == "processing"
        assert enqueued[0].delay == pytest.approx(10.0, abs=0.2)

    def test_the_backoff_is_capped(self, campaign, use_http, enqueued):
        sent = timezone.now() - timedelta(minutes=10)
        task = running_task(campaign, WAVESPEED, status="processing", polls=40, submitted_at=sent)
        use_http(("GET", WAVESPEED.status_url, WAVESPEED.state("processing")))

        jobs.poll(task.pk)

        assert enqueued[0].delay == 30.0

    def test_an_older_status_does_not_move_the_task_back(self, campaign, use_http, enqueued):
        task = running_task(campaign, WAVE, status="processing", progress=60)
        use_http(("GET", WAVE.status_url, WAVE.state("queued", progress=0)))

        jobs.poll(task.pk)

        task = reload(task)
        assert task.status == "processing"
        assert task.progress == 60
        assert task.polls == 1

    @both_shapes
    def test_completed_downloads_and_stores_every_image(
        self, campaign, shape, use_http, enqueued, cdn, tmp_path
    ):
        task = running_task(campaign, shape, num_images=2)
        urls = serve(cdn, ("/out/0.png", "PNG", (64, 48)), ("/out/1.jpg", "JPEG", (800, 600)))
        use_http(("GET", shape.status_url, shape.done(*urls)))

        assert jobs.poll(task.pk) == Outcome(Did.STORED, stored=2)

        task = reload(task)
        assert task.status == "succeeded"
        assert task.progress == 100
        assert task.completed_at is not None
        assert task.outputs == [{"url": urls[0], "nsfw": False}, {"url": urls[1], "nsfw": False}]
        first, second = images_of(task)
        assert (first.status, second.status) == ("succeeded", "succeeded")
        assert (first.width, first.height, second.width, second.height) == (64, 48, 800, 600)
        assert (first.content_type, second.content_type) == ("image/png", "image/jpeg")
        # A clean copy is stored (imaging.py): the PNG's pixels exactly, named by its hash.
        with default_storage.open(first.file.name) as stored:
            clean = stored.read()
        served = cdn.files["/out/0.png"]
        assert first.bytes == len(clean)
        assert first.sha256 == hashlib.sha256(clean).hexdigest()
        assert first.served_sha256 == hashlib.sha256(served).hexdigest() != first.sha256
        assert first.provider_c2pa is False
        assert pixels(clean) == pixels(served)
        assert first.source_url == urls[0]
        assert first.file.name.startswith(f"imagen/spring/{task.pk}-0-")
        assert first.file.name.endswith(".png")
        assert second.thumbnail.name.startswith(f"imagen/spring/thumbs/{task.pk}-1-")
        provider_name = providers.get_provider_class(task.provider).display_name
        with default_storage.open(second.file.name) as stored:
            clean = stored.read()
        assert Image.open(io.BytesIO(clean)).info["xmp"] == imaging.provenance_xmp(
            imaging.Provenance(model=task.model, provider=provider_name)
        )
        assert second.served_sha256 == hashlib.sha256(cdn.files["/out/1.jpg"]).hexdigest()
        with default_storage.open(second.thumbnail.name) as thumb:
            assert max(Image.open(thumb).size) == 400
        assert len(stored_files(tmp_path)) == 4
        assert enqueued == []

    def test_cost_is_the_providers_own_charge_when_reported(
        self, campaign, use_http, enqueued, cdn
    ):
        task = running_task(campaign, WAVE)
        urls = serve(cdn, ("/a.png", "PNG", (10, 10)))
        use_http(("GET", WAVE.status_url, WAVE.done(*urls)))

        jobs.poll(task.pk)

        assert reload(task).cost == Decimal("0.0425")  # 21250 quota / 500000

    def test_cost_is_estimated_per_delivered_image_when_not_reported(
        self, campaign, use_http, enqueued, cdn
    ):
        task = running_task(campaign, WAVESPEED, num_images=3, estimated_cost="0.12")
        urls = serve(cdn, ("/a.png", "PNG", (10, 10)), ("/b.png", "PNG", (10, 10)))
        use_http(("GET", WAVESPEED.status_url, WAVESPEED.done(*urls)))

        jobs.poll(task.pk)

        assert reload(task).cost == Decimal("0.08")

    def test_nsfw_flags_are_kept(self, campaign, use_http, enqueued, cdn):
        task = running_task(campaign, WAVESPEED, num_images=2)
        urls = serve(cdn, ("/a.png", "PNG", (10, 10)), ("/b.png", "PNG", (10, 10)))
        answer = WAVESPEED.state("completed", tuple(urls), has_nsfw_contents=[False, True])
        use_http(("GET", WAVESPEED.status_url, answer))

        jobs.poll(task.pk)

        assert [image.nsfw for image in images_of(task)] == [False, True]

    @both_shapes
    def test_images_the_provider_withheld_are_filtered_with_a_message(
        self, campaign, shape, use_http, enqueued, cdn
    ):
        task = running_task(campaign, shape, num_images=3)
        urls = serve(cdn, ("/only.png", "PNG", (10, 10)))
        use_http(("GET", shape.status_url, shape.done(*urls)))

        assert jobs.poll(task.pk) == Outcome(Did.STORED, stored=1, withheld=2)

        first, second, third = images_of(task)
        assert first.status == "succeeded"
        assert (second.status, third.status) == ("filtered", "filtered")
        assert "returned 1 of 3 images" in second.error_message
        # Whether it was charged is read from the task's cost where it is shown (explain.py),
        # never claimed in the stored message: Wave may bill the whole task.
        assert "charged" not in third.error_message
        assert third.completed_at is not None

    @both_shapes
    def test_failed_marks_images_failed_with_the_providers_message_and_no_cost(
        self, campaign, shape, use_http, enqueued
    ):
        task = running_task(campaign, shape, num_images=2)
        answer, message, code = shape.failed()
        use_http(("GET", shape.status_url, answer))

        assert jobs.poll(task.pk) == Outcome(Did.READ, detail="failed")

        task = reload(task)
        assert task.status == "failed"
        assert task.error_message == message
        assert task.error_code == code
        assert task.cost == 0
        assert [(i.status, i.error_message) for i in images_of(task)] == [("failed", message)] * 2
        assert enqueued == []

    def test_a_task_past_its_deadline_is_failed_without_asking(
        self, campaign, use_http, enqueued, settings
    ):
        settings.IMAGEN_ASSETS = {**settings.IMAGEN_ASSETS, "TASK_TIMEOUT": 600}
        started = timezone.now() - timedelta(seconds=601)
        task = running_task(campaign, WAVESPEED, submitted_at=started)
        use_http()

        assert jobs.poll(task.pk) == Outcome(Did.FAILED, Why.TIMEOUT)

        task = reload(task)
        assert task.status == "failed"
        assert task.error_code == "timeout"
        assert "did not finish within 10 minutes" in task.error_message
        assert images_of(task)[0].status == "failed"
        assert enqueued == []

    @both_shapes
    def test_a_task_the_provider_does_not_know_is_failed(self, campaign, shape, use_http, enqueued):
        body = (
            fixture("wave/error_404_task_not_found.json")
            if shape is WAVE
            else fixture("wavespeed/error_404_envelope.json")
        )
        task = running_task(campaign, shape)
        use_http(("GET", shape.status_url, json_response(404, body)))

        assert jobs.poll(task.pk) == Outcome(Did.FAILED)

        task = reload(task)
        assert task.status == "failed"
        assert "HTTP 404" in task.error_message
        assert "not found" in task.error_message.lower()
        assert enqueued == []

    @both_shapes
    def test_an_unknown_status_is_read_again_then_fails_as_an_unexpected_response(
        self, campaign, shape, use_http, enqueued
    ):
        """P6. An answer that cannot be read (here an unknown status) keeps the task open
        and schedules the next read, for UNEXPECTED_READS - 1 reads in a row; the next one
        fails the task saying what was unexpected."""
        task = running_task(campaign, shape)
        use_http(*[("GET", shape.status_url, shape.state("paused"))] * jobs.UNEXPECTED_READS)

        for read in range(1, jobs.UNEXPECTED_READS):
            outcome = poll_now(task)
            assert (outcome.did, outcome.why) == (Did.READ_FAILED, Why.UNEXPECTED_ANSWER)
            assert reload(task).status == "submitted"
            assert reload(task).error_code == f"unexpected:{read}"
            assert f"of {jobs.UNEXPECTED_READS} in a row" in reload(task).error_message
        assert [call.func for call in enqueued] == [jobs.poll] * (jobs.UNEXPECTED_READS - 1)

        assert poll_now(task) == Outcome(Did.FAILED, Why.UNEXPECTED_ANSWER)

        task = reload(task)
        assert task.status == "failed"
        assert task.error_code == "unexpected_response"
        assert task.error_message.startswith("Unexpected provider response: ")
        assert "unknown status 'paused'" in task.error_message
        assert task.polls == jobs.UNEXPECTED_READS
        assert images_of(task)[0].status == "failed"
        assert len(enqueued) == jobs.UNEXPECTED_READS - 1  # no read after the last

    def test_only_unexpected_answers_in_a_row_count(self, campaign, use_http, enqueued):
        """P6. A sane answer between two runs of unexpected ones starts the count again."""
        task = running_task(campaign, WAVESPEED)
        odd = ("GET", WAVESPEED.status_url, json_response(200, {"code": 200, "data": []}))
        sane = ("GET", WAVESPEED.status_url, WAVESPEED.state("processing"))
        limit = jobs.UNEXPECTED_READS
        use_http(*[odd] * (limit - 1), sane, *[odd] * (limit - 1))

        for _read in range(limit - 1):
            poll_now(task)
        assert poll_now(task) == Outcome(Did.READ, detail="processing")
        assert (reload(task).error_code, reload(task).error_message) == ("", "")
        for _read in range(limit - 1):
            assert poll_now(task).why is Why.UNEXPECTED_ANSWER

        task = reload(task)
        assert task.status == "processing"
        assert task.error_code == f"unexpected:{limit - 1}"
        assert "answer has no 'data' object" in task.error_message

    def test_a_body_that_is_not_json_counts_as_unexpected_too(self, campaign, use_http, enqueued):
        task = running_task(campaign, WAVESPEED)
        page = httpx.Response(200, content=b"<html>maintenance</html>")
        use_http(*[("GET", WAVESPEED.status_url, page)] * jobs.UNEXPECTED_READS)

        outcomes = [poll_now(task) for _read in range(jobs.UNEXPECTED_READS)]

        assert [o.did for o in outcomes] == [Did.READ_FAILED] * (jobs.UNEXPECTED_READS - 1) + [
            Did.FAILED
        ]
        assert "a body that is not JSON" in reload(task).error_message

    def test_a_transient_read_error_retries_later(self, campaign, use_http, enqueued):
        task = running_task(campaign, WAVESPEED)
        use_http(("GET", WAVESPEED.status_url, httpx.Response(503, headers={"Retry-After": "20"})))

        assert jobs.poll(task.pk).did is Did.READ_FAILED

        task = reload(task)
        assert task.status == "submitted"
        assert task.polls == 1
        (call,) = enqueued
        assert (call.func, call.args, call.delay) == (jobs.poll, (task.pk,), 20.0)

    def test_a_task_not_submitted_yet_is_skipped(self, campaign, use_http, enqueued):
        task = queued_task(campaign, WAVESPEED)
        use_http()

        assert jobs.poll(task.pk) == Outcome(Did.SKIPPED, Why.NOT_SUBMITTED)

    def test_a_failed_task_is_skipped(self, campaign, use_http, enqueued):
        task = running_task(campaign, WAVESPEED, status="failed")
        use_http()

        assert jobs.poll(task.pk) == Outcome(Did.SKIPPED, Why.TERMINAL)
        assert jobs.poll(987654) == Outcome(Did.SKIPPED, Why.TERMINAL)


# -- complete --------------------------------------------------------------------------------


class CompleteJobTests:
    def test_running_twice_stores_each_image_once(
        self, campaign, use_http, enqueued, cdn, tmp_path
    ):
        task = running_task(campaign, WAVESPEED, num_images=2)
        urls = serve(cdn, ("/a.png", "PNG", (10, 10)), ("/b.png", "PNG", (12, 12)))
        use_http(("GET", WAVESPEED.status_url, WAVESPEED.done(*urls)))
        jobs.poll(task.pk)
        files = stored_files(tmp_path)
        names = [(i.file.name, i.thumbnail.name) for i in images_of(task)]

        assert jobs.complete(task.pk) == Outcome(Did.SKIPPED, Why.NOTHING_LEFT)
        assert jobs.poll(task.pk) == Outcome(Did.SKIPPED, Why.TERMINAL)  # stored already

        assert len(cdn.requests) == 2
        assert stored_files(tmp_path) == files
        assert len(files) == 4
        assert [(i.file.name, i.thumbnail.name) for i in images_of(task)] == names

    def test_a_task_that_has_not_succeeded_is_left_alone(self, campaign, enqueued):
        task = running_task(campaign, WAVESPEED, status="processing")

        assert jobs.complete(task.pk) == Outcome(Did.SKIPPED, Why.NOT_SUCCEEDED)
        assert images_of(task)[0].status == "queued"

    def test_an_output_that_is_not_an_image_fails_that_image_only(
        self, campaign, enqueued, cdn, tmp_path
    ):
        good = serve(cdn, ("/good.png", "PNG", (10, 10)))[0]
        cdn.files["/bad.png"] = b"<html>Access denied</html>"
        task = running_task(
            campaign,
            WAVESPEED,
            num_images=2,
            status="succeeded",
            outputs=[{"url": good, "nsfw": False}, {"url": cdn.url("/bad.png"), "nsfw": False}],
        )

        assert jobs.complete(task.pk) == Outcome(Did.STORED, stored=1)

        first, second = images_of(task)
        assert first.status == "succeeded"
        assert second.status == "failed"
        assert second.error_message == "Could not store the image: not a JPEG, PNG or WebP image"
        assert not second.file
        assert len(stored_files(tmp_path)) == 2

    def test_an_output_on_an_untrusted_private_host_is_refused(self, campaign, enqueued, cdn):
        task = running_task(
            campaign,
            WAVESPEED,
            status="succeeded",
            outputs=[{"url": "http://metadata.internal/latest", "nsfw": False}],
        )

        jobs.complete(task.pk)

        image = images_of(task)[0]
        assert image.status == "failed"
        # Not a host WaveSpeed serves results from: refused on its name (D1), not looked up.
        assert image.error_message.startswith(
            "Could not store the image: refused metadata.internal (untrusted host)"
        )
        assert "IMAGEN_ASSETS['PROVIDERS']['wavespeed']['OPTIONS']['RESULT_HOSTS']" in (
            image.error_message
        )
        assert cdn.requests == []

    def test_an_expired_output_url_fails_the_image(self, campaign, enqueued, cdn):
        cdn.files["/gone.png"] = b"<Error><Code>AccessDenied</Code></Error>"
        cdn.status["/gone.png"] = 403
        task = running_task(
            campaign,
            WAVESPEED,
            status="succeeded",
            outputs=[{"url": cdn.url("/gone.png"), "nsfw": False}],
        )

        jobs.complete(task.pk)

        image = images_of(task)[0]
        assert image.status == "failed"
        assert "answered HTTP 403" in image.error_message
        assert len(cdn.requests) == 1  # a 403 is not retried


# -- webhooks --------------------------------------------------------------------------------


def signed_state(status: str, urls: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    """A WebhookEvent.state as the view records it from a signed WaveSpeed webhook."""
    return {
        "task_id": WS_ID,
        "status": status,
        "progress": None,
        "outputs": [{"url": url, "nsfw": False} for url in urls],
        "error_code": "",
        "error_message": "",
        "cost": None,
        **extra,
    }


def event(provider: str = "wavespeed", **fields: Any) -> WebhookEvent:
    fields.setdefault("event_id", f"evt-{WebhookEvent.objects.count()}")
    fields.setdefault("provider_task_id", WS_ID if provider == "wavespeed" else WAVE_ID)
    return WebhookEvent.objects.create(provider=provider, **fields)


class ProcessWebhookTests:
    def test_a_signed_state_is_applied_and_completes_the_task(
        self, campaign, use_http, enqueued, cdn
    ):
        task = running_task(campaign, WAVESPEED)
        urls = serve(cdn, ("/a.png", "PNG", (20, 10)))
        use_http()  # no provider call: the signed body is authoritative
        received = event(state=signed_state("succeeded", tuple(urls)))

        outcome = jobs.process_webhook(received.pk)

        assert outcome == Outcome(
            Did.APPLIED, detail="succeeded", then=Outcome(Did.STORED, stored=1)
        )
        assert reload(task).status == "succeeded"
        image = images_of(task)[0]
        assert (image.status, image.width, image.height) == ("succeeded", 20, 10)
        received.refresh_from_db()
        assert received.processed_at is not None
        assert received.outcome == str(outcome)
        assert received.task_id == task.pk

    def test_a_signed_failure_is_applied(self, campaign, use_http, enqueued):
        task = running_task(campaign, WAVESPEED)
        use_http()
        received = event(state=signed_state("failed", error_code="1200", error_message="filtered"))

        assert jobs.process_webhook(received.pk) == Outcome(Did.APPLIED, detail="failed")

        task = reload(task)
        assert (task.status, task.error_code, task.error_message) == ("failed", "1200", "filtered")
        assert images_of(task)[0].status == "failed"

    def test_a_late_processing_after_succeeded_does_not_move_status_back(
        self, campaign, use_http, enqueued
    ):
        task = running_task(
            campaign, WAVESPEED, status="succeeded", progress=100, image_status="succeeded"
        )
        use_http()
        received = event(state=signed_state("processing"))

        outcome = jobs.process_webhook(received.pk)

        assert outcome.did is Did.IGNORED
        assert outcome.detail == "processing: the task was already succeeded"
        task = reload(task)
        assert task.status == "succeeded"
        assert task.progress == 100
        assert images_of(task)[0].status == "succeeded"

    def test_a_late_failure_after_success_is_ignored_and_says_so(
        self, campaign, use_http, enqueued
    ):
        task = running_task(
            campaign, WAVESPEED, status="succeeded", progress=100, image_status="succeeded"
        )
        use_http()
        received = event(state=signed_state("failed", error_message="late"))

        outcome = jobs.process_webhook(received.pk)

        assert outcome.did is Did.IGNORED
        assert outcome.detail == "failed: the task was already succeeded"
        received.refresh_from_db()
        assert received.outcome == str(outcome)
        assert (reload(task).status, images_of(task)[0].status) == ("succeeded", "succeeded")

    def test_a_duplicate_completion_stores_nothing_twice(
        self, campaign, use_http, enqueued, cdn, tmp_path
    ):
        running_task(campaign, WAVESPEED)
        urls = serve(cdn, ("/a.png", "PNG", (20, 10)))
        use_http()
        jobs.process_webhook(event(state=signed_state("succeeded", tuple(urls))).pk)

        outcome = jobs.process_webhook(event(state=signed_state("succeeded", tuple(urls))).pk)

        # The re-sent callback does not start a second storing run at all.
        assert outcome == Outcome(Did.IGNORED, detail="succeeded: the task was already succeeded")
        assert len(cdn.requests) == 1
        assert len(stored_files(tmp_path)) == 2

    def test_a_hint_makes_the_job_read_the_task_again(self, campaign, use_http, enqueued, cdn):
        task = running_task(campaign, WAVE)
        urls = serve(cdn, ("/a.png", "PNG", (10, 10)))
        use_http(("GET", WAVE.status_url, WAVE.done(*urls)))
        received = event("wave", task=task, state=None)

        outcome = jobs.process_webhook(received.pk)

        assert outcome == Outcome(Did.REREAD, then=Outcome(Did.STORED, stored=1))
        assert reload(task).status == "succeeded"
        assert enqueued == []  # no further poll: the re-read was enough

    def test_a_hint_for_a_running_task_does_not_start_a_second_poll_chain(
        self, campaign, use_http, enqueued
    ):
        task = running_task(campaign, WAVE)
        use_http(("GET", WAVE.status_url, WAVE.state("processing", progress="50%")))
        received = event("wave", task=task, state=None)

        jobs.process_webhook(received.pk)

        assert reload(task).progress == 50
        assert enqueued == []

    def test_an_event_for_an_unknown_task_is_retried_with_a_delay(
        self, campaign, use_http, enqueued
    ):
        use_http()
        received = event(
            state=signed_state("succeeded"), received_at=timezone.now() - timedelta(seconds=8)
        )

        assert jobs.process_webhook(received.pk) == Outcome(Did.WAITING)

        (call,) = enqueued
        assert (call.func, call.args) == (jobs.process_webhook, (received.pk,))
        assert 2 + 8 / 4 <= call.delay < 2 + 10 / 4
        received.refresh_from_db()
        assert received.processed_at is None

    def test_an_event_whose_task_row_is_gone_is_filed_by_provider_task_id(
        self, campaign, use_http, enqueued
    ):
        """W13: the event's task column has no database constraint, so a task deleted while
        its webhook was recorded leaves an id with no row; the job copes."""
        task = running_task(campaign, WAVESPEED)
        use_http()
        received = event(state=signed_state("failed", error_message="x"), task_id=task.pk + 999)

        assert jobs.process_webhook(received.pk) == Outcome(Did.APPLIED, detail="failed")

        received.refresh_from_db()
        assert received.task_id == task.pk
        assert reload(task).status == "failed"

    def test_an_event_for_a_task_not_yet_submitted_waits_too(self, campaign, use_http, enqueued):
        task = queued_task(campaign, WAVE)
        use_http()
        received = event("wave", task=task, state=None)

        assert jobs.process_webhook(received.pk) == Outcome(Did.WAITING)
        assert [c.func for c in enqueued] == [jobs.process_webhook]

    def test_an_event_for_an_unknown_task_is_orphaned_after_the_grace_period(
        self, campaign, use_http, enqueued
    ):
        use_http()
        old = timezone.now() - timedelta(seconds=jobs.ORPHAN_GRACE_SECONDS + 1)
        received = event(state=signed_state("succeeded"), received_at=old)

        assert jobs.process_webhook(received.pk) == Outcome(Did.ORPHANED)

        received.refresh_from_db()
        assert received.processed_at is not None
        assert received.outcome == "orphaned: no task with this id"
        assert enqueued == []

    def test_an_event_of_another_provider_does_not_match_the_task(
        self, campaign, use_http, enqueued
    ):
        running_task(campaign, WAVESPEED)
        use_http()
        received = event("sandbox", provider_task_id=WS_ID, state=signed_state("succeeded"))

        assert jobs.process_webhook(received.pk) == Outcome(Did.WAITING)

    def test_a_processed_event_is_skipped(self, use_http, enqueued):
        use_http()
        received = event(state=signed_state("succeeded"), processed_at=timezone.now())

        assert jobs.process_webhook(received.pk) == Outcome(Did.SKIPPED, Why.PROCESSED)
        assert jobs.process_webhook(987654) == Outcome(Did.SKIPPED, Why.PROCESSED)


# -- reconcile -------------------------------------------------------------------------------


class ReconcileTests:
    def test_queues_the_next_step_for_stale_rows_only(self, campaign, enqueued, settings):
        settings.IMAGEN_ASSETS = {**settings.IMAGEN_ASSETS, "RECONCILE_AFTER": 120}
        old = timezone.now() - timedelta(seconds=121)
        soon = timezone.now() + timedelta(seconds=60)

        def aged(task: GenerationTask) -> GenerationTask:
            GenerationTask.objects.filter(pk=task.pk).update(updated_at=old)
            GeneratedImage.objects.filter(task=task).update(updated_at=old)
            return task

        stale_queued = aged(make_task(campaign))
        fresh_queued = make_task(campaign)
        aged(make_task(campaign, submit_lease_until=soon))  # a submit is running
        stale_submitted = aged(make_task(campaign, status="submitted", provider_task_id="a"))
        stale_processing = aged(make_task(campaign, status="processing", provider_task_id="b"))
        make_task(campaign, status="processing", provider_task_id="c")
        stale_succeeded = aged(make_task(campaign, status="succeeded", provider_task_id="d"))
        aged(
            make_task(campaign, status="succeeded", provider_task_id="e", image_status="succeeded")
        )
        aged(make_task(campaign, status="failed", provider_task_id="f", image_status="failed"))
        stale_event = event(received_at=old)
        event(received_at=old, processed_at=timezone.now())
        event()
        assert fresh_queued.pk

        counts = jobs.reconcile()

        assert counts == {"submit": 1, "poll": 2, "complete": 1, "webhook": 1, "sweep": 0}
        assert sorted((c.name, c.args) for c in enqueued) == sorted(
            [
                ("submit", (stale_queued.pk,)),
                ("poll", (stale_submitted.pk,)),
                ("poll", (stale_processing.pk,)),
                ("complete", (stale_succeeded.pk,)),
                ("process_webhook", (stale_event.pk,)),
            ]
        )
        assert all(c.delay is None for c in enqueued)

    def test_a_submit_waiting_out_a_rate_limit_is_left_alone(self, campaign, use_http, enqueued):
        task = queued_task(campaign, WAVESPEED)
        busy = fixture("wavespeed/error_429_error_code.json")
        use_http(("POST", WAVESPEED.submit_url, json_response(429, busy, {"Retry-After": "600"})))
        jobs.submit(task.pk)
        two_minutes_later = timezone.now() - timedelta(seconds=121)
        GenerationTask.objects.filter(pk=task.pk).update(updated_at=two_minutes_later)
        enqueued.clear()

        assert jobs.reconcile()["submit"] == 0

    def test_nothing_stale_queues_nothing(self, campaign, enqueued):
        make_task(campaign)
        make_task(campaign, status="processing", provider_task_id="x")

        assert jobs.reconcile() == {"submit": 0, "poll": 0, "complete": 0, "webhook": 0, "sweep": 0}
        assert enqueued == []

    def test_after_redis_lost_its_jobs_every_open_row_gets_its_job_back_when_due(
        self, campaign, enqueued
    ):
        # Rows last changed before Redis restarted without its data lost their jobs, even
        # those changed a moment ago and those whose next step is not due yet; rows
        # changed since then have theirs on the new Redis.
        now = timezone.now()
        restarted = now - timedelta(seconds=10)

        def changed(task: GenerationTask, seconds_ago: float) -> GenerationTask:
            at = now - timedelta(seconds=seconds_ago)
            GenerationTask.objects.filter(pk=task.pk).update(updated_at=at)
            GeneratedImage.objects.filter(task=task).update(updated_at=at)
            return task

        queued = changed(make_task(campaign), 11)
        retrying = changed(make_task(campaign, submit_lease_until=now + timedelta(seconds=40)), 11)
        polled = changed(
            make_task(
                campaign,
                status="processing",
                provider_task_id="a",
                next_poll_at=now + timedelta(seconds=20),
            ),
            11,
        )
        overdue = changed(
            make_task(
                campaign,
                status="submitted",
                provider_task_id="b",
                next_poll_at=now - timedelta(seconds=5),
            ),
            30,
        )
        succeeded = changed(make_task(campaign, status="succeeded", provider_task_id="c"), 11)
        changed(make_task(campaign, status="processing", provider_task_id="d"), 5)  # since
        changed(make_task(campaign), 5)  # since
        changed(
            make_task(campaign, status="failed", provider_task_id="e", image_status="failed"),
            11,
        )
        hook = event(received_at=now - timedelta(seconds=11))
        event(received_at=now - timedelta(seconds=5))

        with mock.patch("django.utils.timezone.now", return_value=now):
            counts = jobs.reconcile(lost_before=restarted.timestamp())

        assert counts == {"submit": 2, "poll": 2, "complete": 1, "webhook": 1, "sweep": 0}
        assert sorted((c.name, c.args, c.delay) for c in enqueued) == sorted(
            [
                ("submit", (queued.pk,), None),
                ("submit", (retrying.pk,), 40.0),
                ("poll", (polled.pk,), 20.0),
                ("poll", (overdue.pk,), None),
                ("complete", (succeeded.pk,), None),
                ("process_webhook", (hook.pk,), None),
            ]
        )

    def test_a_run_with_reschedule_queues_the_next(self, enqueued, monkeypatch):
        # The chain's bookkeeping lives in Redis: tests/integration/test_pipeline.py.
        calls = []
        monkeypatch.setattr(queueing, "schedule_reconciler", lambda **kw: calls.append(kw) or True)

        jobs.reconcile(reschedule=True)
        jobs.reconcile()

        assert calls == [{}]


class SubmitInvalidRequestTests:
    def test_a_request_the_provider_no_longer_accepts_fails_without_any_http(
        self, campaign, use_http, enqueued
    ):
        # Queued for WaveSpeed with a negative prompt, then moved to Wave, which has none.
        task = queued_task(campaign, WAVE, negative_prompt="blurry")
        use_http()  # any request would fail the test

        assert jobs.submit(task.pk) == Outcome(Did.FAILED, Why.INVALID_REQUEST)
        task = reload(task)
        assert task.status == "failed"
        assert "negative" in task.error_message.lower()
        assert [image.status for image in images_of(task)] == ["failed"]


class DownloadRetryTests:
    """complete() tries a download a second time only when the failure was transient."""

    def _succeeded_task(self, campaign):
        task = running_task(campaign, WAVESPEED, status="succeeded", num_images=1)
        GenerationTask.objects.filter(pk=task.pk).update(
            outputs=[{"url": "https://cdn.test/a.png", "nsfw": False}]
        )
        return task

    def test_a_timeout_is_tried_once_more(self, campaign, enqueued, monkeypatch, tmp_path):
        task = self._succeeded_task(campaign)
        calls = []

        def download(url, **kwargs):
            calls.append(url)
            if len(calls) == 1:
                raise DownloadError("cdn.test timed out", transient=True)
            return Downloaded(image_bytes("PNG"), "image/png", url)

        monkeypatch.setattr(ingest, "download", download)

        assert jobs.complete(task.pk) == Outcome(Did.STORED, stored=1)
        assert len(calls) == 2
        assert images_of(task)[0].status == "succeeded"

    def test_a_cdn_that_stays_down_leaves_the_image_open_and_tries_later(
        self, campaign, enqueued, monkeypatch, tmp_path
    ):
        task = self._succeeded_task(campaign)
        GenerationTask.objects.filter(pk=task.pk).update(completed_at=timezone.now())
        down = [True]

        def download(url, **kwargs):
            if down[0]:
                raise DownloadError("cdn.test timed out", transient=True)
            return Downloaded(image_bytes("PNG"), "image/png", url)

        monkeypatch.setattr(ingest, "download", download)

        assert jobs.complete(task.pk) == Outcome(Did.STORED, retrying=1)
        image = images_of(task)[0]
        assert image.status == "queued"  # paid for: not given up
        assert image.error_message.endswith("Trying again shortly.")
        assert [(c.func, c.args) for c in enqueued] == [(jobs.complete, (task.pk,))]
        assert 5 <= enqueued[0].delay <= 60

        down[0] = False
        assert jobs.complete(task.pk) == Outcome(Did.STORED, stored=1)
        image = images_of(task)[0]
        assert (image.status, image.error_message) == ("succeeded", "")

    def test_the_next_run_waits_for_the_hosts_retry_after(
        self, campaign, enqueued, monkeypatch, tmp_path
    ):
        task = self._succeeded_task(campaign)
        GenerationTask.objects.filter(pk=task.pk).update(completed_at=timezone.now())

        def rate_limited(url, **kwargs):
            raise DownloadError("cdn.test answered HTTP 429", transient=True, retry_after=600)

        monkeypatch.setattr(ingest, "download", rate_limited)

        assert jobs.complete(task.pk) == Outcome(Did.STORED, retrying=1)
        assert [(c.func, c.args) for c in enqueued] == [(jobs.complete, (task.pk,))]
        assert 600 <= enqueued[0].delay <= 901  # never later than the task's deadline

    def test_a_storage_failure_is_tried_again(self, campaign, enqueued, monkeypatch, tmp_path):
        task = self._succeeded_task(campaign)
        monkeypatch.setattr(
            ingest, "download", lambda url, **kw: Downloaded(image_bytes("PNG"), "image/png", url)
        )

        def disk_full(image, checked, names=None):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(ingest, "store", disk_full)

        assert jobs.complete(task.pk).retrying == 1
        assert images_of(task)[0].error_message == (
            "Could not store the image (OSError). Trying again shortly."
        )

    def test_transient_failures_give_up_after_the_task_timeout(
        self, campaign, enqueued, monkeypatch, tmp_path
    ):
        task = self._succeeded_task(campaign)
        GenerationTask.objects.filter(pk=task.pk).update(
            completed_at=timezone.now() - timedelta(seconds=3600)
        )
        monkeypatch.setattr(
            ingest,
            "download",
            lambda url, **kw: (_ for _ in ()).throw(DownloadError("timed out", transient=True)),
        )

        assert jobs.complete(task.pk) == Outcome(Did.STORED)
        image = images_of(task)[0]
        assert image.status == "failed"
        assert image.error_message == "Could not store the image: timed out"
        assert enqueued == []

    def test_a_refusal_is_not_tried_again(self, campaign, enqueued, monkeypatch, tmp_path):
        task = self._succeeded_task(campaign)
        calls = []

        def download(url, **kwargs):
            calls.append(url)
            raise DownloadError("cdn.test answered HTTP 404")

        monkeypatch.setattr(ingest, "download", download)

        assert jobs.complete(task.pk) == Outcome(Did.STORED)
        assert len(calls) == 1
        image = images_of(task)[0]
        assert image.status == "failed"
        assert "HTTP 404" in image.error_message
