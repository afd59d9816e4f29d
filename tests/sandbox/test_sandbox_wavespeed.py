"""The sandbox's WaveSpeed AI v3 API (docs/providers.md section 2) over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import re
import time
from typing import Any

import httpx
import pytest
from PIL import Image

from imagen_assets.sandbox import callbacks

MODEL = "wavespeed-ai/imagen4"
ISO_NANOSECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


def submit(
    client: httpx.Client, model: str = MODEL, webhook: str | None = None, **fields: Any
) -> httpx.Response:
    params = {"webhook": webhook} if webhook else None
    body = {"prompt": "a red bicycle", **fields}
    return client.post(f"/api/v3/{model}", json=body, params=params)


def wait_terminal(client: httpx.Client, wait_until: Any, prediction_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        data = client.get(f"/api/v3/predictions/{prediction_id}/result").json()["data"]
        return data if data["status"] in ("completed", "failed") else None

    return wait_until(done)


def expected_signature(secret: str, webhook_id: str, timestamp: str, body: bytes) -> str:
    """The documented scheme, computed independently of the sandbox's own signing code.

    Deliberately not ``imagen_assets.sandbox.signing.sign_wavespeed_webhook`` (the one signer
    the other tests use): the sandbox signs with it, so this cross-checks that signer.
    """
    key = secret[len("whsec_") :].encode()
    content = webhook_id.encode() + b"." + timestamp.encode() + b"." + body
    return "v3," + hmac.new(key, content, hashlib.sha256).hexdigest()


class TestSubmitAndResult:
    def test_submit_answers_an_enveloped_created_prediction(self, client, sandbox):
        response = submit(client)

        assert response.status_code == 200
        envelope = response.json()
        assert envelope["code"] == 200
        assert envelope["message"] == "success"
        data = envelope["data"]
        assert re.fullmatch(r"[0-9a-f]{32}", data["id"])
        assert data["model"] == MODEL
        assert data["status"] == "created"
        assert data["outputs"] == []
        assert data["has_nsfw_contents"] == []
        assert data["error"] == ""
        assert data["timings"] == {"inference": 0}
        assert ISO_NANOSECONDS.match(data["created_at"])
        assert data["urls"] == {"get": f"{sandbox.url}/api/v3/predictions/{data['id']}/result"}
        assert sandbox.stats["wavespeed_submits"] == 1

    @pytest.mark.parametrize("suffix", ["/result", ""])
    def test_result_is_served_on_both_documented_paths(self, client, sandbox, wait_until, suffix):
        prediction_id = submit(client, num_images=2).json()["data"]["id"]
        wait_terminal(client, wait_until, prediction_id)

        response = client.get(f"/api/v3/predictions/{prediction_id}{suffix}")

        assert response.status_code == 200
        data = response.json()["data"]
        assert data["status"] == "completed"
        assert len(data["outputs"]) == 2
        assert all(url.startswith(f"{sandbox.url}/files/") for url in data["outputs"])
        assert data["has_nsfw_contents"] == [False, False]
        assert data["timings"]["inference"] >= 50

    def test_prediction_passes_through_processing(self, client, sandbox, wait_until):
        sandbox.config.latency = 0.4
        prediction_id = submit(client).json()["data"]["id"]
        seen: set[str] = set()

        def record() -> bool:
            status = client.get(f"/api/v3/predictions/{prediction_id}/result").json()["data"][
                "status"
            ]
            seen.add(status)
            return status == "completed"

        wait_until(record)

        assert "processing" in seen

    def test_unknown_prediction_is_404_in_the_envelope(self, client):
        response = client.get(f"/api/v3/predictions/{'0' * 32}/result")

        assert response.status_code == 404
        assert response.json()["code"] == 404
        assert response.json()["data"] is None

    def test_failed_prediction_is_still_http_200(self, client, wait_until):
        prediction_id = submit(client, prompt="[fail] please").json()["data"]["id"]

        data = wait_terminal(client, wait_until, prediction_id)

        assert data["status"] == "failed"
        assert data["error"]
        assert data["outputs"] == []

    def test_filter_marker_drops_the_last_image(self, client, wait_until):
        prediction_id = submit(client, prompt="beach [filter]", num_images=3).json()["data"]["id"]

        data = wait_terminal(client, wait_until, prediction_id)

        assert data["status"] == "completed"
        assert len(data["outputs"]) == 2
        assert data["has_nsfw_contents"] == [False, False]

    @pytest.mark.parametrize(
        ("model", "fields", "size"),
        [
            ("wavespeed-ai/imagen4", {"aspect_ratio": "1:1"}, (1024, 1024)),
            ("wavespeed-ai/imagen4", {"aspect_ratio": "3:4"}, (896, 1280)),
            ("google/imagen4-fast", {"aspect_ratio": "9:16"}, (768, 1408)),
            ("google/imagen4", {"aspect_ratio": "4:3"}, (1280, 896)),
            ("google/imagen4", {"aspect_ratio": "3:4", "resolution": "2k"}, (1792, 2560)),
            ("google/imagen4-ultra", {"aspect_ratio": "16:9", "resolution": "1k"}, (1408, 768)),
            ("google/imagen4-ultra", {"aspect_ratio": "1:1", "resolution": "2k"}, (2048, 2048)),
        ],
    )
    def test_each_model_renders_googles_pixel_size(self, client, model, fields, size):
        data = submit(client, model, enable_sync_mode=True, **fields).json()["data"]

        assert data["model"] == model
        (url,) = data["outputs"]
        image = Image.open(io.BytesIO(client.get(url).content))
        assert image.size == size
        assert image.format == "JPEG"


class TestSecretAndAuth:
    def test_webhook_secret_endpoint(self, client, sandbox):
        response = client.get("/api/v3/webhook/secret")

        assert response.json() == {
            "code": 200,
            "message": "success",
            "data": {"secret": sandbox.webhook_secret},
        }
        assert re.fullmatch(r"whsec_[0-9a-f]{48}", sandbox.webhook_secret)

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", "/api/v3/webhook/secret"),
            ("POST", f"/api/v3/{MODEL}"),
            ("GET", "/api/v3/predictions/abc/result"),
        ],
    )
    def test_missing_bearer_token_is_401_in_the_envelope(self, anonymous, method, path):
        response = anonymous.request(method, path, json={"prompt": "p"})

        assert response.status_code == 401
        assert response.json() == {"code": 401, "message": "invalid authentication", "data": None}


class TestValidation:
    @pytest.mark.parametrize(
        ("model", "fields"),
        [
            (MODEL, {"prompt": ""}),
            (MODEL, {"prompt": None}),
            (MODEL, {"num_images": 5}),
            (MODEL, {"num_images": 0}),
            (MODEL, {"aspect_ratio": "2:3"}),
            (MODEL, {"seed": -2}),
            (MODEL, {"seed": 2_147_483_648}),
            (MODEL, {"negative_prompt": 3}),
            (MODEL, {"resolution": "2k"}),
            ("google/imagen4-fast", {"resolution": "1k"}),
            ("google/imagen4", {"resolution": "4k"}),
            (MODEL, {"enable_sync_mode": "yes"}),
            (MODEL, {"webhook_url": "https://example.com/hook"}),
            (MODEL, {"n": 2}),
        ],
    )
    def test_invalid_submit_is_400_in_the_envelope(self, client, sandbox, model, fields):
        body = {k: v for k, v in {"prompt": "p", **fields}.items() if v is not None}

        response = client.post(f"/api/v3/{model}", json=body)

        assert response.status_code == 400
        envelope = response.json()
        assert envelope["code"] == 400
        assert envelope["data"] is None
        assert envelope["message"]
        assert sandbox.stats["wavespeed_submits"] == 0

    def test_unknown_model_is_404(self, client):
        response = client.post("/api/v3/google/imagen9", json={"prompt": "p"})

        assert response.status_code == 404
        assert response.json()["code"] == 404

    def test_base64_output_with_a_webhook_is_rejected_as_documented(self, client, receiver):
        response = submit(client, "google/imagen4", webhook=receiver.url, enable_base64_output=True)

        assert response.status_code == 400
        assert response.json() == {
            "error": "webhook callback does not support base64 output, "
            "please use the normal API to use base64 output"
        }

    def test_base64_output_returns_bare_base64_images(self, client):
        data = submit(
            client, "google/imagen4", enable_base64_output=True, enable_sync_mode=True
        ).json()["data"]

        (encoded,) = data["outputs"]
        assert not encoded.startswith("data:")
        image = Image.open(io.BytesIO(base64.b64decode(encoded)))
        assert image.size == (1024, 1024)


class TestSyncMode:
    def test_sync_mode_answers_the_completed_prediction(self, client, sandbox):
        sandbox.config.latency = 0.2
        started = time.monotonic()

        response = submit(client, enable_sync_mode=True, num_images=2)

        assert time.monotonic() - started >= 0.2
        data = response.json()["data"]
        assert data["status"] == "completed"
        assert len(data["outputs"]) == 2

    def test_sync_mode_reports_a_failure_with_http_200(self, client):
        response = submit(client, prompt="[fail]", enable_sync_mode=True)

        assert response.status_code == 200
        assert response.json()["data"]["status"] == "failed"

    def test_sync_mode_timeout_answers_5004_and_keeps_processing(self, client, sandbox, wait_until):
        sandbox.config.update(latency=0.4, sync_timeout=0.15)

        response = submit(client, enable_sync_mode=True)

        assert response.status_code == 200
        data = response.json()["data"]
        assert data["status"] == "processing"
        assert data["code"] == 5004
        assert data["error"] == (
            "Sync mode timed out after 0.15 seconds. "
            "The prediction is still processing asynchronously."
        )
        assert wait_terminal(client, wait_until, data["id"])["status"] == "completed"
        assert sandbox.stats["wavespeed_sync_timeouts"] == 1


class TestWebhooks:
    def test_completed_webhook_is_bare_signed_and_verifiable(
        self, client, sandbox, receiver, wait_until
    ):
        body = {"prompt": "a red bicycle", "num_images": 2, "seed": 11, "aspect_ratio": "4:3"}
        submitted = client.post(
            f"/api/v3/{MODEL}", json=body, params={"webhook": receiver.url}
        ).json()["data"]

        (hook,) = receiver.wait_for(1)
        polled = client.get(f"/api/v3/predictions/{submitted['id']}/result").json()["data"]

        assert hook.headers["content-type"] == "application/json"
        timestamp = hook.headers["webhook-timestamp"]
        assert timestamp.isdigit()
        assert abs(int(timestamp) - time.time()) < 10
        assert hook.headers["webhook-signature"] == expected_signature(
            sandbox.webhook_secret, hook.headers["webhook-id"], timestamp, hook.body
        )
        payload = hook.json()
        assert "code" not in payload  # bare prediction, no envelope
        assert "data" not in payload
        assert payload["input"] == body
        assert isinstance(payload["executionTime"], int)
        assert payload["status"] == "completed"
        for key in ("id", "model", "outputs", "urls", "has_nsfw_contents", "created_at", "error"):
            assert payload[key] == polled[key]

    def test_failed_prediction_sends_a_webhook_too(self, client, receiver):
        submit(client, webhook=receiver.url, prompt="[fail]")

        (hook,) = receiver.wait_for(1)

        assert hook.json()["status"] == "failed"
        assert hook.json()["error"]

    def test_signature_changes_with_the_secret(self, client, sandbox, receiver):
        sandbox.config.webhook_secret = "whsec_rotated"
        submit(client, webhook=receiver.url)

        (hook,) = receiver.wait_for(1)

        headers = hook.headers
        assert headers["webhook-signature"] == expected_signature(
            "whsec_rotated", headers["webhook-id"], headers["webhook-timestamp"], hook.body
        )

    def test_retries_reuse_the_webhook_id(self, client, receiver, monkeypatch):
        monkeypatch.setattr(callbacks, "RETRY_BACKOFF", (0.01, 0.02, 0.04))
        receiver.answers = [503]
        submit(client, webhook=receiver.url)

        first, second = receiver.wait_for(2)

        assert first.headers["webhook-id"] == second.headers["webhook-id"]
        assert first.body == second.body

    def test_duplicates_are_separate_deliveries(self, client, sandbox, receiver):
        sandbox.config.duplicate_callbacks = True
        submit(client, webhook=receiver.url)

        first, second = receiver.wait_for(2)

        assert first.body == second.body
        assert first.headers["webhook-id"] != second.headers["webhook-id"]

    def test_out_of_order_sends_a_stale_processing_webhook_after_the_terminal_one(
        self, client, sandbox, receiver
    ):
        sandbox.config.out_of_order = True
        submit(client, webhook=receiver.url)

        terminal, stale = receiver.wait_for(2)

        assert terminal.json()["status"] == "completed"
        assert stale.json()["status"] == "processing"
        assert stale.json()["outputs"] == []
        assert stale.json()["id"] == terminal.json()["id"]
        assert stale.headers["webhook-signature"] == expected_signature(
            sandbox.webhook_secret,
            stale.headers["webhook-id"],
            stale.headers["webhook-timestamp"],
            stale.body,
        )

    def test_drop_callbacks_sends_no_webhook(self, client, sandbox, receiver, wait_until):
        sandbox.config.drop_callbacks = True
        prediction_id = submit(client, webhook=receiver.url).json()["data"]["id"]

        wait_terminal(client, wait_until, prediction_id)
        time.sleep(0.2)

        assert receiver.requests == []
        assert sandbox.stats["callbacks_dropped"] == 1
