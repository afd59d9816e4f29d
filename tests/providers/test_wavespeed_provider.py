"""WaveSpeedProvider's submit, result and errors against the seed page and docs/providers.md §2."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
from django.core.exceptions import ImproperlyConfigured

from imagen_assets.providers import GenerationParams, Output, ProviderError, WebhookAuth
from imagen_assets.providers.wavespeed import WaveSpeedProvider
from imagen_assets.status import TaskStatus
from tests.mock_http import fixture, json_response
from tests.provider_cases import ProviderContractCases

from .known_sizes import SIZES_1K, SIZES_2K

KEY = "ws-test-key-51b07aa9e3"
BASE = "https://api.wavespeed.ai"
SUBMIT_URL = f"{BASE}/api/v3/wavespeed-ai/imagen4"
ID = "8a1b2c3d4e5f40718293a4b5c6d7e8f9"
RESULT_URL = f"{BASE}/api/v3/predictions/{ID}/result"
PROMPT = "Capture an intimate close-up of a vintage package of all-purpose flour"
# Every field the seed's request example and parameter table name.
SEED_BODY_FIELDS = {"prompt", "negative_prompt", "aspect_ratio", "num_images", "seed"}


def wavespeed(http=None, **options) -> WaveSpeedProvider:
    return WaveSpeedProvider(
        "wavespeed",
        {"API_KEY": KEY, **options},
        client=http.client if http is not None else None,
    )


def submitted(url: str = SUBMIT_URL):
    return ("POST", url, json_response(200, fixture("wavespeed/submit_created.json")))


def result(name: str):
    return ("GET", RESULT_URL, json_response(200, fixture(f"wavespeed/{name}.json")))


class WaveSpeedProviderContractTests(ProviderContractCases):
    provider_class = WaveSpeedProvider
    backend = "imagen_assets.providers.wavespeed.WaveSpeedProvider"
    display_name = "WaveSpeed AI"
    api_key = KEY
    task_id = ID
    submit_url = SUBMIT_URL
    status_url = f"{BASE}/api/v3/predictions/{{}}/result"
    secret_options = {"API_KEY": "secret-api-key-1234", "WEBHOOK_SECRET": "whsec_s"}
    webhook_auth = WebhookAuth.SIGNATURE
    supports_negative_prompt = True
    defaults = ("https://api.wavespeed.ai", "wavespeed-ai/imagen4", Decimal("0.04"))
    base_url_forms = [
        ("https://api.wavespeed.ai/api/v3", "https://api.wavespeed.ai"),
        ("http://10.0.0.5:9000/ws/", "http://10.0.0.5:9000/ws"),
    ]
    output_sizes = SIZES_1K  # by default (RESOLUTION unset)
    client_errors = [
        (
            401,
            "wavespeed/error_401_envelope.json",
            "WaveSpeed AI refused the API key (HTTP 401): check "
            "IMAGEN_ASSETS['PROVIDERS']['wavespeed']['OPTIONS']['API_KEY']. "
            "WaveSpeed AI said: invalid authentication",
        ),
        (404, "wavespeed/error_404_envelope.json", "WaveSpeed AI: HTTP 404: prediction not found"),
    ]
    rate_limit = (
        "wavespeed/error_429_error_code.json",
        "rate_limited",
        "WaveSpeed AI: HTTP 429 [rate_limited]: rate limit exceeded, slow down",
    )
    server_error_text = "busy"

    def make_provider(self, http=None, **options):
        return wavespeed(http, **options)

    def documented_submit(self):
        params = GenerationParams(
            prompt=PROMPT, negative_prompt="text", aspect_ratio="4:3", num_images=2
        )
        return params, {
            "prompt": PROMPT,
            "negative_prompt": "text",
            "aspect_ratio": "4:3",
            "num_images": 2,
        }

    def submit_answer(self):
        return fixture("wavespeed/submit_created.json")

    def status_answer(self, status=None, task_id=None):
        answer = fixture("wavespeed/result_processing.json")
        data = answer["data"]
        answer["data"] = {**data, "status": status or data["status"], "id": task_id or data["id"]}
        return answer

    def error_body(self, message):
        return {"message": message}

    def server_error_answer(self, status):
        return {"code": status, "message": "busy", "data": None}


class WaveSpeedRequestBodyTests:
    def test_matches_the_seed_body(self):
        params = GenerationParams(prompt=PROMPT, negative_prompt="blurry", aspect_ratio="1:1")

        body = wavespeed().request_body(params, callback_url=None)

        assert body == {
            "prompt": PROMPT,
            "negative_prompt": "blurry",
            "aspect_ratio": "1:1",
            "num_images": 1,
        }

    def test_leaves_out_an_empty_negative_prompt_and_a_missing_seed(self):
        body = wavespeed().request_body(GenerationParams(prompt=PROMPT), callback_url=None)

        assert body == {"prompt": PROMPT, "aspect_ratio": "1:1", "num_images": 1}

    @pytest.mark.parametrize("seed", [-1, 0, 2147483647])
    def test_sends_a_seed_when_given(self, seed):
        body = wavespeed().request_body(
            GenerationParams(prompt=PROMPT, seed=seed), callback_url=None
        )

        assert body["seed"] == seed
        assert set(body) <= SEED_BODY_FIELDS

    def test_puts_the_callback_in_the_query_not_the_body(self):
        body = wavespeed().request_body(GenerationParams(prompt=PROMPT), callback_url="https://x/y")

        assert set(body) <= SEED_BODY_FIELDS

    @pytest.mark.parametrize("seed", [-2, 2147483648])
    def test_refuses_a_seed_out_of_range(self, seed):
        with pytest.raises(ValueError, match="seed"):
            wavespeed().request_body(GenerationParams(prompt=PROMPT, seed=seed), callback_url=None)

    @pytest.mark.parametrize("model", ["google/imagen4", "google/imagen4-ultra"])
    def test_asks_google_models_for_2k_when_configured(self, model):
        provider = wavespeed(MODEL=model, RESOLUTION="2k")

        body = provider.request_body(GenerationParams(prompt=PROMPT), callback_url=None)

        assert body["resolution"] == "2k"
        assert provider.output_size("16:9") == SIZES_2K["16:9"]

    def test_refuses_a_resolution_for_a_model_without_one(self):
        with pytest.raises(ImproperlyConfigured, match="RESOLUTION"):
            wavespeed(RESOLUTION="2k")

    def test_refuses_an_unknown_resolution(self):
        with pytest.raises(ImproperlyConfigured, match="'4k'"):
            wavespeed(MODEL="google/imagen4", RESOLUTION="4k")


class WaveSpeedSubmitTests:
    def test_sends_no_idempotency_header(self, mock_http):
        http = mock_http(submitted())

        wavespeed(http).submit(GenerationParams(prompt=PROMPT), idempotency_key="req-1-task-0")

        assert "Idempotency-Key" not in http.last.headers
        assert b"req-1-task-0" not in http.last.content

    def test_asks_for_the_webhook_in_the_query(self, mock_http):
        callback = "https://shop.example.com/imagen/webhooks/wavespeed/?alias=ws&x=1 2"
        http = mock_http(submitted(f"{SUBMIT_URL}?{httpx.QueryParams({'webhook': callback})}"))

        wavespeed(http).submit(
            GenerationParams(prompt=PROMPT), idempotency_key="k", callback_url=callback
        )

        assert http.last.url.params["webhook"] == callback
        assert http.last.url.query.startswith(b"webhook=https%3A%2F%2Fshop.example.com%2F")
        assert b"&x=" not in http.last.url.query
        assert "webhook" not in http.last_json()

    def test_reads_the_created_answer_as_submitted(self, mock_http):
        http = mock_http(submitted())

        task = wavespeed(http).submit(GenerationParams(prompt=PROMPT), idempotency_key="k")

        assert task.task_id == ID
        assert task.status is TaskStatus.SUBMITTED
        assert task.outputs == ()
        assert task.cost is None
        assert task.progress is None
        assert task.raw == fixture("wavespeed/submit_created.json")["data"]

    def test_posts_to_the_configured_model(self, mock_http):
        http = mock_http(submitted(f"{BASE}/api/v3/google/imagen4-ultra"))

        wavespeed(http, MODEL="google/imagen4-ultra", RESOLUTION="2k").submit(
            GenerationParams(prompt=PROMPT), idempotency_key="k"
        )

        assert http.last.url.raw_path == b"/api/v3/google/imagen4-ultra"
        assert http.last_json()["resolution"] == "2k"

    def test_refuses_an_error_envelope_in_a_200_answer(self, mock_http):
        http = mock_http(
            (
                "POST",
                SUBMIT_URL,
                json_response(200, fixture("wavespeed/envelope_error_in_200.json")),
            )
        )

        with pytest.raises(ProviderError) as caught:
            wavespeed(http).submit(GenerationParams(prompt=PROMPT), idempotency_key="k")

        assert caught.value.code == "500"
        assert caught.value.retryable is True
        assert "internal server error" in str(caught.value)

    def test_refuses_an_answer_without_data(self, mock_http):
        http = mock_http(
            ("POST", SUBMIT_URL, json_response(200, {"code": 200, "message": "success"}))
        )

        with pytest.raises(ProviderError, match="'data'"):
            wavespeed(http).submit(GenerationParams(prompt=PROMPT), idempotency_key="k")


class WaveSpeedFetchTests:
    @pytest.mark.parametrize(
        ("name", "status"),
        [
            ("submit_created", TaskStatus.SUBMITTED),
            ("result_processing", TaskStatus.PROCESSING),
            ("result_completed", TaskStatus.SUCCEEDED),
            ("result_completed_nsfw_short", TaskStatus.SUCCEEDED),
            ("result_failed_moderation", TaskStatus.FAILED),
            ("result_timeout", TaskStatus.FAILED),
            ("result_sync_mode_timeout", TaskStatus.PROCESSING),
        ],
    )
    def test_reads_every_documented_status_shape(self, mock_http, name, status):
        http = mock_http(result(name))

        task = wavespeed(http).fetch(ID)

        assert task.task_id == ID
        assert task.status is status
        assert task.cost is None
        assert task.raw == fixture(f"wavespeed/{name}.json")["data"]

    def test_pairs_outputs_with_their_nsfw_flags(self, mock_http):
        http = mock_http(result("result_completed"))

        task = wavespeed(http).fetch(ID)

        assert task.outputs == (
            Output("https://d2p7pge43lyniu.cloudfront.net/output/8a1b2c3d-0.jpeg", nsfw=False),
            Output("https://d2p7pge43lyniu.cloudfront.net/output/8a1b2c3d-1.jpeg", nsfw=True),
        )
        assert (task.error_code, task.error_message) == ("", "")

    def test_a_short_nsfw_list_means_not_flagged(self, mock_http):
        http = mock_http(result("result_completed_nsfw_short"))

        task = wavespeed(http).fetch(ID)

        assert [output.nsfw for output in task.outputs] == [True, False]

    def test_a_missing_nsfw_list_means_not_flagged(self, mock_http):
        data = fixture("wavespeed/result_completed.json")
        del data["data"]["has_nsfw_contents"]
        http = mock_http(("GET", RESULT_URL, json_response(200, data)))

        task = wavespeed(http).fetch(ID)

        assert [output.nsfw for output in task.outputs] == [False, False]

    def test_reads_the_error_and_code_of_a_failed_task(self, mock_http):
        http = mock_http(result("result_failed_moderation"))

        task = wavespeed(http).fetch(ID)

        assert task.error_code == "1200"
        assert task.error_message == "Content is filtered due to unknown reasons"
        assert task.outputs == ()

    def test_reads_a_server_timeout_as_failed(self, mock_http):
        http = mock_http(result("result_timeout"))

        task = wavespeed(http).fetch(ID)

        assert task.error_message == "Task timeout by server"
        assert task.error_code == ""

    def test_text_a_database_cannot_store_is_made_safe(self, mock_http):
        data = fixture("wavespeed/result_timeout.json")
        raw = json_response(200, data).content.replace(
            b"Task timeout", b"Task\\u0000 \\udc00timeout"
        )
        http = mock_http(("GET", RESULT_URL, httpx.Response(200, content=raw)))

        task = wavespeed(http).fetch(ID)

        assert task.error_message == "Task\ufffd \ufffdtimeout by server"

    def test_reads_a_sync_mode_timeout_as_still_processing(self, mock_http):
        http = mock_http(result("result_sync_mode_timeout"))

        task = wavespeed(http).fetch(ID)

        assert not task.terminal
        assert (task.error_code, task.error_message) == ("", "")
        assert task.raw["code"] == 5004

    @pytest.mark.parametrize(
        ("status", "message"),
        [("cancelled", ""), ("deleted", "the prediction was deleted at WaveSpeed")],
    )
    def test_reads_cancelled_and_deleted_as_cancelled(self, mock_http, status, message):
        data = fixture("wavespeed/result_processing.json")
        data["data"]["status"] = status
        http = mock_http(("GET", RESULT_URL, json_response(200, data)))

        task = wavespeed(http).fetch(ID)

        assert task.status is TaskStatus.CANCELLED
        assert task.error_message == message

    def test_a_timeout_without_text_still_explains_itself(self, mock_http):
        data = fixture("wavespeed/result_timeout.json")
        data["data"]["error"] = ""
        http = mock_http(("GET", RESULT_URL, json_response(200, data)))

        assert wavespeed(http).fetch(ID).error_message == "the prediction timed out at WaveSpeed"

    def test_refuses_a_prediction_without_id(self, mock_http):
        data = fixture("wavespeed/result_processing.json")
        del data["data"]["id"]
        http = mock_http(("GET", RESULT_URL, json_response(200, data)))

        with pytest.raises(ProviderError, match="'id'"):
            wavespeed(http).fetch(ID)


class WaveSpeedErrorTests:
    def fail(self, mock_http, response) -> ProviderError:
        http = mock_http(("GET", RESULT_URL, response))
        with pytest.raises(ProviderError) as caught:
            wavespeed(http).fetch(ID)
        return caught.value

    def test_explains_a_bad_request_with_a_bare_error_string(self, mock_http):
        http = mock_http(
            (
                "POST",
                SUBMIT_URL,
                json_response(400, fixture("wavespeed/error_400_base64_webhook.json")),
            )
        )

        with pytest.raises(ProviderError) as caught:
            wavespeed(http).submit(GenerationParams(prompt=PROMPT), idempotency_key="k")

        assert caught.value.retryable is False
        assert str(caught.value) == (
            "WaveSpeed AI: HTTP 400: webhook callback does not support base64 output, "
            "please use the normal API to use base64 output"
        )

    def test_keeps_an_envelope_code_that_differs_from_the_status(self, mock_http):
        error = self.fail(
            mock_http, json_response(400, {"code": 1401, "message": "bad seed", "data": None})
        )

        assert str(error) == "WaveSpeed AI: HTTP 400 [1401]: bad seed"

    @pytest.mark.parametrize(("status", "ambiguous"), [(500, False), (503, False), (504, True)])
    def test_a_gateway_timeout_on_submit_is_ambiguous(self, mock_http, status, ambiguous):
        # 504: the gateway gave up, the prediction may still be created behind it; a second
        # submit could be billed twice. 500/503: the API refused, a retry is safe.
        http = mock_http(("POST", SUBMIT_URL, httpx.Response(status, text="upstream")))

        with pytest.raises(ProviderError) as caught:
            wavespeed(http).submit(GenerationParams(prompt="p"), idempotency_key="k")

        assert (caught.value.ambiguous, caught.value.retryable) == (ambiguous, True)
