"""WaveProvider against the seed page and docs/providers.md section 1."""

from __future__ import annotations

import hashlib
import json
import time
from decimal import Decimal

import pytest

from imagen_assets.providers import (
    GenerationParams,
    Output,
    ProviderError,
    WebhookAuth,
    WebhookError,
)
from imagen_assets.providers.wave import WaveProvider
from imagen_assets.status import TaskStatus
from tests.mock_http import fixture, json_response
from tests.provider_cases import ProviderContractCases

from .known_sizes import SIZES_2K

KEY = "wave-test-key-7c1e94d2"
BASE = "https://www.qingbo.dev"
TASK = "task-wave1775285160b950328499"
PROMPT = (
    "Sunrise on a mountaintop, sea of clouds rolling, distant snow peaks glowing gold, "
    "photorealistic photography style"
)
# Every field the seed's request example names.
SEED_BODY_FIELDS = {
    "model",
    "action",
    "prompt",
    "n",
    "seed",
    "aspect_ratio",
    "resolution",
    "callback_url",
    "callback_events",
}


def wave(http=None, **options) -> WaveProvider:
    return WaveProvider(
        "wave", {"API_KEY": KEY, **options}, client=http.client if http is not None else None
    )


def submit_ok(data=None, status=200):
    return (
        "POST",
        f"{BASE}/v1/tasks",
        json_response(status, data or fixture("wave/submit_queued.json")),
    )


def get_ok(name: str, task_id: str = TASK):
    return ("GET", f"{BASE}/v1/tasks/{task_id}", json_response(200, fixture(name)))


class WaveProviderContractTests(ProviderContractCases):
    provider_class = WaveProvider
    backend = "imagen_assets.providers.wave.WaveProvider"
    display_name = "Wave"
    api_key = KEY
    task_id = TASK
    submit_url = f"{BASE}/v1/tasks"
    status_url = f"{BASE}/v1/tasks/{{}}"
    secret_options = {"API_KEY": "secret-api-key-1234"}
    webhook_auth = WebhookAuth.URL_TOKEN
    supports_negative_prompt = False
    defaults = ("https://www.qingbo.dev", "imagen-4.0", Decimal("0.0425"))
    base_url_forms = [
        ("https://www.qingbo.dev/v1", "https://www.qingbo.dev"),
        ("https://api.qingbo.ai/v1/", "https://api.qingbo.ai"),
        ("https://proxy.example/wave/v1x", "https://proxy.example/wave/v1x"),
    ]
    output_sizes = SIZES_2K  # "native 2K"
    client_errors = [
        (
            400,
            "wave/error_400_invalid_aspect_ratio.json",
            "Wave: HTTP 400 [invalid_aspect_ratio]: "
            "aspect_ratio must be one of 1:1, 4:3, 3:4, 16:9, 9:16",
        ),
        (
            401,
            "wave/error_401.json",
            "Wave refused the API key (HTTP 401): check "
            "IMAGEN_ASSETS['PROVIDERS']['wave']['OPTIONS']['API_KEY']. Wave said: Invalid API key",
        ),
        (402, "wave/error_402.json", "Wave: HTTP 402 [insufficient_quota]: Insufficient balance"),
        (
            404,
            "wave/error_404_task_not_found.json",
            "Wave: HTTP 404 [task_not_found]: Task not found",
        ),
    ]
    rate_limit = (
        "wave/error_429_quota_window.json",
        "quota_window_exceeded",
        "Wave: HTTP 429 [quota_window_exceeded]: Sliding-window quota exhausted",
    )
    server_error_text = "Model has no price configured"

    def make_provider(self, http=None, **options):
        return wave(http, **options)

    def documented_submit(self):
        return GenerationParams(prompt=PROMPT), {
            "model": "imagen-4.0",
            "action": "generate",
            "prompt": PROMPT,
            "n": 1,
            "seed": -1,
            "aspect_ratio": "1:1",
        }

    def submit_answer(self):
        return fixture("wave/submit_queued.json")

    def status_answer(self, status=None, task_id=None):
        data = fixture("wave/status_processing_progress_int_ms.json")
        return {**data, "status": status or data["status"], "task_id": task_id or data["task_id"]}

    def error_body(self, message):
        return {"error": {"message": message}}

    def server_error_answer(self, status):
        return fixture("wave/error_500_price_not_configured.json")


class WaveRequestBodyTests:
    def test_matches_the_seed_body_without_a_callback(self):
        body = wave().request_body(GenerationParams(prompt=PROMPT), callback_url=None)

        assert body == {
            "model": "imagen-4.0",
            "action": "generate",
            "prompt": PROMPT,
            "n": 1,
            "seed": -1,
            "aspect_ratio": "1:1",
        }
        assert set(body) <= SEED_BODY_FIELDS

    def test_asks_for_every_terminal_event_with_a_callback(self):
        body = wave().request_body(
            GenerationParams(prompt=PROMPT), callback_url="https://example.com/hook/tok"
        )

        assert body["callback_url"] == "https://example.com/hook/tok"
        assert body["callback_events"] == ["completed", "failed", "cancelled"]
        assert set(body) <= SEED_BODY_FIELDS

    def test_sends_count_seed_and_ratio(self):
        params = GenerationParams(prompt=PROMPT, aspect_ratio="16:9", num_images=4, seed=42)

        body = wave().request_body(params, callback_url=None)

        assert (body["n"], body["seed"], body["aspect_ratio"]) == (4, 42, "16:9")

    def test_leaves_resolution_out(self):
        body = wave().request_body(GenerationParams(prompt=PROMPT), callback_url="https://x/y")

        assert "resolution" not in body

    def test_uses_the_configured_model(self):
        body = wave(MODEL="imagen-4.0-next").request_body(
            GenerationParams(prompt=PROMPT), callback_url=None
        )

        assert body["model"] == "imagen-4.0-next"

    def test_refuses_a_negative_prompt(self):
        params = GenerationParams(prompt=PROMPT, negative_prompt="blurry")

        with pytest.raises(ValueError, match="negative prompt"):
            wave().request_body(params, callback_url=None)


class WaveSubmitTests:
    def test_sends_idempotency_key(self, mock_http):
        http = mock_http(submit_ok())

        wave(http).submit(GenerationParams(prompt=PROMPT), idempotency_key="req-1-task-0")

        assert http.last.headers["Idempotency-Key"] == "req-1-task-0"

    def test_sends_the_body_request_body_returns(self, mock_http):
        http = mock_http(submit_ok())
        provider = wave(http)
        params = GenerationParams(prompt=PROMPT, num_images=2, seed=7, aspect_ratio="9:16")

        provider.submit(params, idempotency_key="k", callback_url="https://example.com/cb/tok")

        assert http.last_json() == provider.request_body(
            params, callback_url="https://example.com/cb/tok"
        )

    def test_refuses_an_empty_idempotency_key(self, mock_http):
        with pytest.raises(ValueError, match="idempotency"):
            wave(mock_http()).submit(GenerationParams(prompt=PROMPT), idempotency_key="")

    def test_reads_the_seed_answer_as_submitted(self, mock_http):
        http = mock_http(submit_ok())

        task = wave(http).submit(GenerationParams(prompt=PROMPT), idempotency_key="k")

        assert task.task_id == TASK
        assert task.status is TaskStatus.SUBMITTED
        assert task.progress == 0
        assert task.outputs == ()
        assert task.cost is None
        assert task.raw["created_at"] == 1775285160040

    def test_ignores_the_pre_consumed_cost(self, mock_http):
        http = mock_http(submit_ok(fixture("wave/submit_queued_pre_consumed.json")))

        task = wave(http).submit(GenerationParams(prompt=PROMPT), idempotency_key="k")

        assert task.task_id == "task_01K8SGYNNNVBQTXNR4MM964S7K"
        assert task.cost is None

    def test_reads_an_already_processing_answer(self, mock_http):
        data = {**fixture("wave/submit_queued.json"), "status": "processing", "progress": 10}
        http = mock_http(submit_ok(data))

        task = wave(http).submit(GenerationParams(prompt=PROMPT), idempotency_key="k")

        assert task.status is TaskStatus.PROCESSING

    def test_refuses_an_answer_without_task_id(self, mock_http):
        http = mock_http(submit_ok({"status": "queued"}))

        with pytest.raises(ProviderError, match="task_id"):
            wave(http).submit(GenerationParams(prompt=PROMPT), idempotency_key="k")

    def test_uses_the_configured_base_url(self, mock_http):
        http = mock_http(
            (
                "POST",
                "https://api.qingbo.ai/v1/tasks",
                json_response(200, fixture("wave/submit_queued.json")),
            )
        )

        wave(http, BASE_URL="https://api.qingbo.ai/").submit(
            GenerationParams(prompt=PROMPT), idempotency_key="k"
        )


class WaveFetchTests:
    @pytest.mark.parametrize(
        ("name", "task_id", "status", "progress"),
        [
            ("status_queued_progress_empty", "task-wave1789004688b950049238", "submitted", None),
            ("status_processing_progress_int_ms", TASK, "processing", 45),
            (
                "status_processing_progress_percent",
                "task-wave1789004688b950049238",
                "processing",
                45,
            ),
            ("status_completed_url_list", "task_01K8SGYNNNVBQTXNR4MM964S7K", "succeeded", 100),
            ("status_completed_url_string_ms", TASK, "succeeded", 100),
            ("status_completed_n2_two_items", "task-wave1789004688b950049238", "succeeded", 100),
            ("status_completed_n2_one_item", "task-wave1789004688b950049238", "succeeded", 100),
            ("status_failed", "task-wave1789004688b950049238", "failed", 100),
            ("status_cancelled", TASK, "cancelled", 0),
        ],
    )
    def test_reads_every_documented_status_shape(self, mock_http, name, task_id, status, progress):
        http = mock_http(get_ok(f"wave/{name}.json", task_id))

        task = wave(http).fetch(task_id)

        assert task.task_id == task_id
        assert task.status == status
        assert task.progress == progress
        assert task.raw == fixture(f"wave/{name}.json")

    def test_reads_a_completed_task_with_url_lists(self, mock_http):
        http = mock_http(
            get_ok("wave/status_completed_url_list.json", "task_01K8SGYNNNVBQTXNR4MM964S7K")
        )

        task = wave(http).fetch("task_01K8SGYNNNVBQTXNR4MM964S7K")

        assert task.outputs == (Output("https://cdn.qingbo.dev/output/xxx.png"),)
        assert task.cost == Decimal("0.0425")
        assert task.terminal
        assert (task.error_code, task.error_message) == ("", "")

    def test_reads_a_url_string_and_millisecond_timestamps(self, mock_http):
        http = mock_http(get_ok("wave/status_completed_url_string_ms.json"))

        task = wave(http).fetch(TASK)

        assert task.outputs == (Output("https://cdn.qingbo.dev/output/one.jpg"),)
        assert task.raw["completed_at"] == 1775285171912

    @pytest.mark.parametrize(
        "name", ["status_completed_n2_two_items", "status_completed_n2_one_item"]
    )
    def test_flattens_two_images_in_order_whatever_the_layout(self, mock_http, name):
        http = mock_http(get_ok(f"wave/{name}.json", "task-wave1789004688b950049238"))

        task = wave(http).fetch("task-wave1789004688b950049238")

        assert [output.url for output in task.outputs] == [
            "https://cdn.qingbo.ai/output/a.jpg",
            "https://cdn.qingbo.ai/output/b.jpg",
        ]
        assert task.cost == Decimal("0.085")

    def test_reads_the_error_of_a_failed_task(self, mock_http):
        http = mock_http(get_ok("wave/status_failed.json", "task-wave1789004688b950049238"))

        task = wave(http).fetch("task-wave1789004688b950049238")

        assert task.status is TaskStatus.FAILED
        assert task.error_code == "upstream_bad_request"
        assert task.error_message == "[upstream_bad_request] Upstream returned: invalid prompt"
        assert task.cost == Decimal(0)
        assert task.outputs == ()

    def test_reads_a_cancelled_task(self, mock_http):
        http = mock_http(get_ok("wave/status_cancelled.json"))

        task = wave(http).fetch(TASK)

        assert task.status is TaskStatus.CANCELLED
        assert task.cost == Decimal(0)

    def test_reads_the_legacy_succeeded_status(self, mock_http):
        data = {**fixture("wave/status_completed_url_list.json"), "status": "succeeded"}
        http = mock_http(("GET", f"{BASE}/v1/tasks/{data['task_id']}", json_response(200, data)))

        task = wave(http).fetch(data["task_id"])

        assert task.status is TaskStatus.SUCCEEDED

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (0, 0),
            (45, 45),
            (45.7, 45),
            ("45%", 45),
            (" 7 % ", 7),
            ("100%", 100),
            ("", None),
            (None, None),
            (150, 100),
            (-3, 0),
            ("101%", 100),
            ("half", None),
            (True, None),
            ([], None),
        ],
    )
    def test_reads_progress_as_int_or_percent_string(self, mock_http, value, expected):
        data = {**fixture("wave/status_processing_progress_int_ms.json"), "progress": value}
        http = mock_http(("GET", f"{BASE}/v1/tasks/{TASK}", json_response(200, data)))

        assert wave(http).fetch(TASK).progress == expected

    def test_reads_missing_progress_as_unknown(self, mock_http):
        data = fixture("wave/status_processing_progress_int_ms.json")
        del data["progress"]
        http = mock_http(("GET", f"{BASE}/v1/tasks/{TASK}", json_response(200, data)))

        assert wave(http).fetch(TASK).progress is None


class WaveErrorTests:
    def fail(self, mock_http, response) -> ProviderError:
        http = mock_http(("GET", f"{BASE}/v1/tasks/{TASK}", response))
        with pytest.raises(ProviderError) as caught:
            wave(http).fetch(TASK)
        return caught.value

    def test_explains_a_bad_parameter_with_its_name(self, mock_http):
        http = mock_http(
            (
                "POST",
                f"{BASE}/v1/tasks",
                json_response(400, fixture("wave/error_400_capability_violation.json")),
            )
        )

        with pytest.raises(ProviderError) as caught:
            wave(http).submit(GenerationParams(prompt=PROMPT), idempotency_key="k")

        error = caught.value
        assert error.retryable is False
        assert error.status_code == 400
        assert error.code == "capability_violation"
        assert str(error) == (
            "Wave: HTTP 400 [capability_violation]: "
            "Parameter not supported by this model (param: extra)"
        )

    def test_waits_until_reset_at_without_retry_after(self, mock_http):
        data = {**fixture("wave/error_429_quota_window.json"), "reset_at": int(time.time()) + 30}

        error = self.fail(mock_http, json_response(429, data))

        assert error.retryable is True
        assert 27 <= error.retry_after <= 31

    def test_reads_reset_at_inside_the_error_object_and_in_milliseconds(self, mock_http):
        reset_ms = int((time.time() + 60) * 1000)
        data = {
            "error": {"message": "window", "code": "quota_window_exceeded", "reset_at": reset_ms}
        }

        error = self.fail(mock_http, json_response(429, data))

        assert 57 <= error.retry_after <= 61

    def test_prefers_retry_after_to_reset_at(self, mock_http):
        data = {**fixture("wave/error_429_quota_window.json"), "reset_at": int(time.time()) + 300}

        error = self.fail(mock_http, json_response(429, data, {"Retry-After": "5"}))

        assert error.retry_after == 5

    def test_a_past_reset_at_means_retry_now(self, mock_http):
        error = self.fail(
            mock_http,
            json_response(429, fixture("wave/error_429_quota_window.json") | {"reset_at": 1}),
        )

        assert error.retry_after == 0


class WaveCallbackTests:
    def test_accepts_any_json_object(self):
        body = json.dumps(fixture("wave/callback_completed.json")).encode()

        assert wave().verify_webhook({}, body) is None
        assert wave().verify_webhook({}, b"{}") is None

    @pytest.mark.parametrize(
        "body",
        [b"", b"not json", b"[1, 2]", b'"text"', b"null", b"\xff\xfe{}", b'{"a": 1'],
    )
    def test_refuses_a_body_that_is_not_a_json_object(self, body):
        with pytest.raises(WebhookError) as caught:
            wave().verify_webhook({}, body)

        assert caught.value.status_code == 400

    def test_gives_only_a_hint_to_re_read_the_task(self):
        body = json.dumps(fixture("wave/callback_completed.json")).encode()

        notice = wave().parse_webhook({}, body)

        assert notice.task_id == "task-wave1789004688b950049238"
        assert notice.task is None
        assert notice.event_id == hashlib.sha256(body).hexdigest()

    def test_a_redelivered_body_has_the_same_event_id(self):
        body = json.dumps(fixture("wave/callback_completed.json")).encode()

        assert wave().parse_webhook({}, body).event_id == wave().parse_webhook({}, body).event_id

    @pytest.mark.parametrize("body", [b'{"task_id": 12}', b'{"data": {"task_id": []}}', b"[]"])
    def test_refuses_a_task_id_that_is_not_a_string(self, body):
        with pytest.raises(WebhookError) as caught:
            wave().parse_webhook({}, body)

        assert caught.value.status_code == 400

    @pytest.mark.parametrize("body", [b"{}", b'{"task_id": ""}', b'{"task_id": null}'])
    def test_a_body_naming_no_task_is_still_a_hint(self, body):
        # The token in the callback URL names the task; the body is only a nudge.
        notice = wave().parse_webhook({}, body)

        assert (notice.task_id, notice.task) == ("", None)

    def test_reads_a_task_id_nested_under_data(self):
        body = b'{"event": "task.completed", "data": {"task_id": "task-wave1"}}'

        assert wave().parse_webhook({}, body).task_id == "task-wave1"
