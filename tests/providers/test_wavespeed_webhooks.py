"""WaveSpeed webhook signatures (docs/providers.md §2.7), with vectors made here.

The docs' worked example does not verify (docs/providers.md §2.7), so every vector is signed
by the package's own signer (``imagen_assets.sandbox.signing``, through
:func:`tests.factories.signed_wavespeed_headers`): separate code from the provider's verifier,
pinned to a hand-computed vector in tests/sandbox/test_sandbox_server.py.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
from django.http.request import HttpHeaders

from imagen_assets.providers import Output, ProviderError, WebhookError
from imagen_assets.providers.wavespeed import WaveSpeedProvider
from imagen_assets.sandbox.signing import sign_wavespeed_webhook
from imagen_assets.status import TaskStatus
from tests.factories import signed_wavespeed_headers
from tests.mock_http import fixture, json_response

KEY = "ws-test-key-51b07aa9e3"
BASE = "https://api.wavespeed.ai"
SECRET_URL = f"{BASE}/api/v3/webhook/secret"
SECRET = "whsec_4d1f0a9c2b7e4f56a8d3"
OTHER_SECRET = "whsec_rotated-7e21c0"
FETCHED_SECRET = "whsec_fetched-secret-0123456789abcdef"
NOW = 1_790_000_000
WEBHOOK_ID = "8a1b2c3d4e5f40718293a4b5c6d7e8f9"
BODY = json.dumps(fixture("wavespeed/webhook_completed.json")).encode()


def digest(body: bytes = BODY) -> str:
    """The hex digest (after ``v3,``) of a genuine webhook for ``body``, sent at NOW."""
    return sign_wavespeed_webhook(SECRET, WEBHOOK_ID, NOW, body).removeprefix("v3,")


def headers(
    *,
    secret: str = SECRET,
    webhook_id: str = WEBHOOK_ID,
    timestamp: int = NOW,
    body: bytes = BODY,
    signature: str | None = None,
) -> dict[str, str]:
    signed = signed_wavespeed_headers(secret, webhook_id, body, timestamp=timestamp)
    return signed if signature is None else {**signed, "webhook-signature": signature}


def wavespeed(http=None, **options) -> WaveSpeedProvider:
    return WaveSpeedProvider(
        "wavespeed",
        {"API_KEY": KEY, "WEBHOOK_SECRET": SECRET, **options},
        client=http.client if http is not None else None,
    )


def refused(
    provider: WaveSpeedProvider, hdrs, body: bytes = BODY, now: float = NOW
) -> WebhookError:
    with pytest.raises(WebhookError) as caught:
        provider.verify_webhook(hdrs, body, now=now)
    message = caught.value.message
    assert "4d1f0a9c2b7e4f56a8d3" not in message
    assert digest(body) not in message
    return caught.value


@pytest.fixture
def provider(mock_http) -> WaveSpeedProvider:
    """A provider with a configured secret and a client that allows no request at all."""
    return wavespeed(mock_http())


class WaveSpeedSignatureTests:
    def test_accepts_a_valid_signature(self, provider):
        assert provider.verify_webhook(headers(), BODY, now=NOW) is None

    def test_reads_header_names_in_any_case(self, provider):
        hdrs = {key.title(): value for key, value in headers().items()}
        hdrs["WEBHOOK-SIGNATURE"] = hdrs.pop("Webhook-Signature")

        provider.verify_webhook(hdrs, BODY, now=NOW)

    def test_reads_django_request_headers(self, provider):
        meta = {f"HTTP_{key.upper().replace('-', '_')}": value for key, value in headers().items()}

        provider.verify_webhook(HttpHeaders(meta), BODY, now=NOW)

    def test_accepts_a_secret_configured_without_prefix(self, mock_http):
        provider = wavespeed(mock_http(), WEBHOOK_SECRET=SECRET.removeprefix("whsec_"))

        provider.verify_webhook(headers(), BODY, now=NOW)

    def test_does_not_base64_decode_the_secret(self, mock_http):
        # "whsec_" + valid base64: a Standard-Webhooks verifier would decode it first.
        secret = "whsec_dGVzdC1zZWNyZXQ="
        provider = wavespeed(mock_http(), WEBHOOK_SECRET=secret)

        provider.verify_webhook(headers(secret=secret), BODY, now=NOW)

    @pytest.mark.parametrize("name", ["webhook-id", "webhook-timestamp", "webhook-signature"])
    def test_refuses_a_missing_header_with_400(self, provider, name):
        hdrs = headers()
        del hdrs[name]

        error = refused(provider, hdrs)

        assert error.status_code == 400
        assert name in error.message

    @pytest.mark.parametrize("name", ["webhook-id", "webhook-timestamp", "webhook-signature"])
    def test_refuses_an_empty_header_with_400(self, provider, name):
        error = refused(provider, {**headers(), name: ""})

        assert error.status_code == 400

    def test_refuses_the_wrong_secret(self, provider):
        error = refused(provider, headers(secret="whsec_guess"))

        assert error.status_code == 401

    def test_refuses_a_body_changed_by_one_byte(self, provider):
        changed = BODY.replace(b'"completed"', b'"completes"')
        assert len(changed) == len(BODY) and changed != BODY

        assert refused(provider, headers(), body=changed).status_code == 401

    def test_refuses_a_body_with_one_byte_more(self, provider):
        assert refused(provider, headers(), body=BODY + b" ").status_code == 401

    def test_refuses_a_changed_webhook_id(self, provider):
        hdrs = {**headers(), "webhook-id": WEBHOOK_ID[:-1] + "0"}

        assert refused(provider, hdrs).status_code == 401

    def test_refuses_a_changed_timestamp(self, provider):
        hdrs = {**headers(), "webhook-timestamp": str(NOW + 1)}

        assert refused(provider, hdrs).status_code == 401

    @pytest.mark.parametrize("age", [301, -301, 10_000, -10_000])
    def test_refuses_a_timestamp_outside_300_seconds(self, provider, age):
        error = refused(provider, headers(timestamp=NOW - age))

        assert error.status_code == 401
        assert error.message == "timestamp outside the tolerance window"

    @pytest.mark.parametrize("age", [300, -300, 0, 299.5])
    def test_accepts_a_timestamp_up_to_300_seconds_either_way(self, provider, age):
        provider.verify_webhook(headers(timestamp=NOW), BODY, now=NOW + age)

    def test_reads_the_tolerance_from_settings(self, provider, settings):
        settings.IMAGEN_ASSETS = {"WEBHOOK_TOLERANCE": 10}

        provider.verify_webhook(headers(timestamp=NOW - 10), BODY, now=NOW)
        assert refused(provider, headers(timestamp=NOW - 11)).status_code == 401

    def test_uses_the_clock_by_default(self, provider):
        now = int(time.time())

        provider.verify_webhook(headers(timestamp=now), BODY)
        with pytest.raises(WebhookError, match="tolerance"):
            provider.verify_webhook(headers(timestamp=now - 3600), BODY)

    @pytest.mark.parametrize("timestamp", ["12.5", "abc", "1e9", "0x10", "١٢٣٤", "12 34", "9" * 25])
    def test_refuses_a_timestamp_that_is_not_an_integer_with_400(self, provider, timestamp):
        error = refused(provider, {**headers(), "webhook-timestamp": timestamp})

        assert error.status_code == 400

    @pytest.mark.parametrize(
        "signature",
        [
            "v3",
            "v3,",
            ",abc",
            "v1,abc",
            "v3,!!!",
            "v3,é",
            "v3,ÿ" + "a" * 63,
            "V3," + "0" * 64,
            "v3," + "a" * 10_240,
            " ".join(["v3," + "0" * 64] * 1000),
            "v3,\udcff",
            "\x00",
        ],
    )
    def test_refuses_a_malformed_signature_without_crashing(self, provider, signature):
        error = refused(provider, headers(signature=signature))

        assert error.status_code in (400, 401)

    def test_refuses_an_uppercase_hex_signature(self, provider):
        signature = "v3," + digest().upper()

        assert refused(provider, headers(signature=signature)).status_code == 401

    def test_refuses_a_webhook_id_that_is_not_text(self, provider):
        hdrs = {**headers(), "webhook-id": "id-\udcff"}

        assert refused(provider, hdrs).status_code == 400

    def test_signs_a_non_ascii_webhook_id_as_utf8(self, provider):
        provider.verify_webhook(headers(webhook_id="tâche-1"), BODY, now=NOW)

    def test_accepts_one_valid_entry_among_several(self, provider):
        valid = digest()
        signature = f"v1,abc v3,{'0' * 64} v2,{valid}  v3,{valid}"

        provider.verify_webhook(headers(signature=signature), BODY, now=NOW)

    def test_ignores_a_valid_digest_under_another_version(self, provider):
        signature = "v1," + digest()

        assert refused(provider, headers(signature=signature)).status_code == 401

    @pytest.mark.parametrize("secret", [SECRET, OTHER_SECRET])
    def test_accepts_either_secret_while_rotating(self, mock_http, secret):
        provider = wavespeed(mock_http(), WEBHOOK_SECRET=[SECRET, OTHER_SECRET])

        provider.verify_webhook(headers(secret=secret), BODY, now=NOW)

    def test_refuses_a_third_secret_while_rotating(self, mock_http):
        provider = wavespeed(mock_http(), WEBHOOK_SECRET=[SECRET, OTHER_SECRET])

        assert refused(provider, headers(secret="whsec_third")).status_code == 401


class WaveSpeedSecretTests:
    def secret_answer(self, data=None):
        return (
            "GET",
            SECRET_URL,
            json_response(200, data or fixture("wavespeed/webhook_secret.json")),
        )

    def test_fetches_the_secret_once_then_uses_the_cache(self, mock_http):
        http = mock_http(self.secret_answer())
        provider = wavespeed(http, WEBHOOK_SECRET="")

        provider.verify_webhook(headers(secret=FETCHED_SECRET), BODY, now=NOW)
        provider.verify_webhook(headers(secret=FETCHED_SECRET), BODY, now=NOW)
        wavespeed(mock_http(), WEBHOOK_SECRET="").verify_webhook(
            headers(secret=FETCHED_SECRET), BODY, now=NOW
        )

        assert len(http.requests) == 1
        assert http.last.headers["Authorization"] == f"Bearer {KEY}"

    def test_fetches_when_no_secret_option_is_set(self, mock_http):
        http = mock_http(self.secret_answer())
        provider = WaveSpeedProvider("wavespeed", {"API_KEY": KEY}, client=http.client)

        assert provider.webhook_secrets() == [FETCHED_SECRET]

    @pytest.mark.parametrize("configured", ["", "  ", [], ["", " "]])
    def test_an_empty_option_means_fetch(self, mock_http, configured):
        http = mock_http(self.secret_answer())

        assert wavespeed(http, WEBHOOK_SECRET=configured).webhook_secrets() == [FETCHED_SECRET]

    def test_accepts_a_bare_secret_answer(self, mock_http):
        http = mock_http(self.secret_answer({"secret": "whsec_bare"}))

        assert wavespeed(http, WEBHOOK_SECRET="").webhook_secrets() == ["whsec_bare"]

    def test_caches_per_alias_and_api_key(self, mock_http):
        first = mock_http(self.secret_answer())
        wavespeed(first, WEBHOOK_SECRET="").webhook_secrets()

        other_key = mock_http(self.secret_answer({"code": 200, "data": {"secret": "whsec_b"}}))
        assert wavespeed(other_key, WEBHOOK_SECRET="", API_KEY="another-key").webhook_secrets() == [
            "whsec_b"
        ]
        other_alias = mock_http(self.secret_answer({"code": 200, "data": {"secret": "whsec_c"}}))
        provider = WaveSpeedProvider("ws-eu", {"API_KEY": KEY}, client=other_alias.client)
        assert provider.webhook_secrets() == ["whsec_c"]

    def test_uses_configured_secrets_without_asking(self, provider):
        assert provider.webhook_secrets() == [SECRET]

    @pytest.mark.parametrize(
        "response",
        [
            json_response(500, {"code": 500, "message": "busy", "data": None}),
            json_response(401, {"code": 401, "message": "invalid authentication", "data": None}),
            json_response(200, {"code": 200, "data": {}}),
            json_response(200, {"code": 200, "data": {"secret": ""}}),
            json_response(200, {"code": 403, "message": "forbidden", "data": None}),
            httpx.Response(200, text="nope"),
            httpx.ConnectError("refused"),
        ],
    )
    def test_a_failed_fetch_is_a_provider_error(self, mock_http, response):
        http = mock_http(("GET", SECRET_URL, response))

        with pytest.raises(ProviderError) as caught:
            wavespeed(http, WEBHOOK_SECRET="").verify_webhook(
                headers(secret=FETCHED_SECRET), BODY, now=NOW
            )

        assert KEY not in str(caught.value)

    def test_a_failed_fetch_is_not_cached(self, mock_http):
        http = mock_http(
            ("GET", SECRET_URL, json_response(503, {"message": "busy"})), self.secret_answer()
        )
        provider = wavespeed(http, WEBHOOK_SECRET="")

        with pytest.raises(ProviderError):
            provider.webhook_secrets()
        assert provider.webhook_secrets() == [FETCHED_SECRET]

    def test_a_rotated_secret_is_fetched_again_at_most_every_five_minutes(self, mock_http):
        rotated = "whsec_rotated-0123456789abcdef"
        http = mock_http(
            self.secret_answer(),
            self.secret_answer({"code": 200, "data": {"secret": rotated}}),
        )
        provider = wavespeed(http, WEBHOOK_SECRET="")
        provider.verify_webhook(headers(secret=FETCHED_SECRET), BODY, now=NOW)

        # Rotated on the account: the cached secret no longer matches, one refresh does.
        provider.verify_webhook(headers(secret=rotated), BODY, now=NOW)
        provider.verify_webhook(headers(secret=rotated), BODY, now=NOW)
        assert provider.webhook_secrets() == [rotated]
        # A forgery right after: refused, and no further call to the API (the fake would
        # fail on an unexpected request).
        assert refused(provider, headers(secret="whsec_forged")).status_code == 401
        assert len(http.requests) == 2

    def test_a_refresh_does_not_accept_a_forgery(self, mock_http):
        http = mock_http(self.secret_answer(), self.secret_answer())
        provider = wavespeed(http, WEBHOOK_SECRET="")
        provider.webhook_secrets()

        assert refused(provider, headers(secret="whsec_forged")).status_code == 401
        assert len(http.requests) == 2  # fetched again, still the same secret

    def test_a_configured_secret_is_never_refreshed(self, provider):
        # `provider` allows no request at all.
        assert refused(provider, headers(secret="whsec_other")).status_code == 401

    def test_does_not_fetch_for_a_request_refused_on_its_headers(self, mock_http):
        provider = wavespeed(mock_http(), WEBHOOK_SECRET="")

        assert refused(provider, {}).status_code == 400
        assert refused(provider, headers(timestamp=NOW - 3600)).status_code == 401
        assert refused(provider, headers(signature="v1,abc")).status_code == 401


class WaveSpeedWebhookParseTests:
    def test_reads_the_signed_prediction_as_authoritative(self, provider):
        notice = provider.parse_webhook(headers(), BODY)

        assert notice.event_id == WEBHOOK_ID
        assert notice.task_id == "8a1b2c3d4e5f40718293a4b5c6d7e8f9"
        assert notice.task is not None
        assert notice.task.status is TaskStatus.SUCCEEDED
        assert notice.task.outputs == (
            Output("https://d2p7pge43lyniu.cloudfront.net/output/8a1b2c3d-0.jpeg", nsfw=False),
        )
        assert notice.task.raw["executionTime"] == 7412

    def test_reads_a_failed_prediction(self, provider):
        body = json.dumps(fixture("wavespeed/webhook_failed.json")).encode()

        task = provider.parse_webhook(headers(body=body), body).task

        assert task.status is TaskStatus.FAILED
        assert task.error_message == "Content is filtered due to unknown reasons"

    def test_event_id_is_the_webhook_id_header(self, provider):
        notice = provider.parse_webhook(headers(webhook_id="evt-2"), BODY)

        assert notice.event_id == "evt-2"

    @pytest.mark.parametrize(
        "body",
        [
            b"",
            b"\xff",
            b"not json",
            b"[]",
            b'{"code": 200, "message": "success", "data": {"id": "x"}}',
            b'{"id": 12, "status": "completed"}',
            b'{"id": "x"}',
            b'{"id": "x", "status": null}',
            b'{"id": "", "status": "completed"}',
            b'{"id": "x", "status": "exploded"}',
        ],
    )
    def test_refuses_a_body_that_is_not_a_prediction(self, provider, body):
        with pytest.raises(WebhookError) as caught:
            provider.parse_webhook(headers(body=body), body)

        assert caught.value.status_code == 400

    def test_refuses_a_missing_webhook_id(self, provider):
        hdrs = headers()
        del hdrs["webhook-id"]

        with pytest.raises(WebhookError) as caught:
            provider.parse_webhook(hdrs, BODY)

        assert caught.value.status_code == 400


class WaveSpeedWebhookEnvelopeTests:
    def test_a_body_wrapped_in_the_api_envelope_is_read_too(self):
        provider = WaveSpeedProvider("wavespeed", {"API_KEY": "k", "WEBHOOK_SECRET": "whsec_x"})
        body = json.dumps(
            {
                "code": 200,
                "message": "success",
                "data": {
                    "id": "p1",
                    "status": "completed",
                    "outputs": ["https://cdn.test/a.jpg"],
                    "has_nsfw_contents": [False],
                },
            }
        ).encode()
        notice = provider.parse_webhook({"webhook-id": "w1"}, body)
        assert notice.task_id == "p1"
        assert notice.task is not None and notice.task.outputs[0].url == "https://cdn.test/a.jpg"
