"""The webhook endpoint (docs/reliability.md W1-W12): verify, record, queue on commit, answer 2xx.

Every request goes through a test client that enforces CSRF checks, as a provider's would.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import types
from datetime import timedelta

import pytest
from django.core.handlers.wsgi import WSGIRequest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from unit_helpers import (
    WS_SECRET,
    MockHTTP,
    fixture,
    json_response,
    make_campaign,
    make_task,
)

from imagen_assets import conf, providers, urls, views
from imagen_assets.models import MAX_ID_LENGTH, WebhookEvent
from imagen_assets.providers import wavespeed
from imagen_assets.sandbox.signing import sign_wavespeed_webhook
from tests.factories import signed_wavespeed_headers
from tests.provider_cases import WebhookViewContractCases, assert_nothing_recorded

pytestmark = pytest.mark.django_db

NOW = 1_790_000_000
WS_ID = "8a1b2c3d4e5f40718293a4b5c6d7e8f9"
WAVE_ID = "task-wave1789004688b950049238"
BODY = json.dumps(fixture("wavespeed/webhook_completed.json")).encode()
WS_URL = "/imagen/webhooks/wavespeed/"
SECRET_PARTS = (WS_SECRET, WS_SECRET.removeprefix("whsec_"))


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch):
    """The WaveSpeed verifier reads ``time.time()`` of its own module; pin it to NOW."""
    monkeypatch.setattr(wavespeed, "time", types.SimpleNamespace(time=lambda: NOW))


@pytest.fixture
def client() -> Client:
    return Client(enforce_csrf_checks=True)


def signed_headers(
    body: bytes, *, timestamp: int = NOW, webhook_id: str = "evt-1", secret: str = WS_SECRET
) -> dict[str, str]:
    return signed_wavespeed_headers(secret, webhook_id, body, timestamp=timestamp)


def post(client: Client, url: str, body: bytes, headers: dict[str, str] | None = None):
    return client.generic("POST", url, body, content_type="application/json", headers=headers or {})


def post_signed(client: Client, body: bytes = BODY, *, timestamp: int = NOW, **kwargs):
    return post(client, WS_URL, body, signed_headers(body, timestamp=timestamp, **kwargs))


class URLTests:
    def test_exactly_the_public_views_are_marked_login_not_required(self):
        """W11: under LoginRequiredMiddleware, only what providers and outside reviewers
        reach without an account is open; a new view must be placed on purpose."""
        marked = {
            pattern.name
            for pattern in urls.urlpatterns
            if not getattr(pattern.callback, "login_required", True)
        }

        assert marked == {"webhook", "webhook_token", "outside_review", "outside_thumbnail"}

    def test_the_suite_runs_with_login_required_middleware(self, settings):
        assert "django.contrib.auth.middleware.LoginRequiredMiddleware" in settings.MIDDLEWARE

    def test_the_urls_are_mounted_where_the_jobs_point_providers(self):
        assert reverse("imagen_assets:webhook", kwargs={"provider": "wavespeed"}) == WS_URL
        assert reverse(
            "imagen_assets:webhook_token", kwargs={"provider": "wave", "token": "abc"}
        ) == ("/imagen/webhooks/wave/abc/")


class WaveSpeedWebhookTests(WebhookViewContractCases):
    alias = "wavespeed"
    provider_task_id = WS_ID

    @pytest.fixture
    def webhook_url(self) -> str:
        return WS_URL

    def valid_body(self) -> bytes:
        return BODY

    def headers_for(self, body: bytes) -> dict[str, str]:
        # One event per body, as WaveSpeed gives each event its own webhook-id.
        return signed_headers(body, webhook_id=f"evt-{hashlib.sha256(body).hexdigest()[:16]}")

    def test_a_valid_signature_records_the_signed_prediction_as_the_state(self, client, enqueued):
        response = post_signed(client, webhook_id="msg_2Lq")

        assert response.status_code == 200
        event = WebhookEvent.objects.get()
        assert (event.event_id, event.task) == ("msg_2Lq", None)
        assert event.state["task_id"] == WS_ID
        assert event.state["status"] == "succeeded"
        assert event.state["outputs"] == [
            {"url": "https://d2p7pge43lyniu.cloudfront.net/output/8a1b2c3d-0.jpeg", "nsfw": False}
        ]
        assert event.state["cost"] is None
        assert "raw" not in event.state

    def test_accepts_any_matching_signature_among_several(self, client, enqueued):
        headers = signed_headers(BODY, timestamp=NOW)
        headers["webhook-signature"] = (
            f"v1,{'0' * 64} v3,{'f' * 64} {headers['webhook-signature']} v2a,xyz"
        )

        assert post(client, WS_URL, BODY, headers).status_code == 200

    def test_accepts_the_new_secret_while_rotating(self, client, enqueued, settings):
        config = settings.IMAGEN_ASSETS
        config["PROVIDERS"]["wavespeed"]["OPTIONS"]["WEBHOOK_SECRET"] = ["whsec_old", WS_SECRET]
        settings.IMAGEN_ASSETS = config

        assert post_signed(client).status_code == 200
        assert post_signed(client, webhook_id="evt-2", secret="whsec_old").status_code == 200
        assert post_signed(client, webhook_id="evt-3", secret="whsec_never").status_code == 401

    @pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
    def test_a_missing_header_is_a_400(self, client, enqueued, missing):
        headers = signed_headers(BODY, timestamp=NOW)
        del headers[missing]

        response = post(client, WS_URL, BODY, headers)

        assert response.status_code == 400
        assert missing in response.json()["error"]
        assert_nothing_recorded(enqueued)

    @pytest.mark.parametrize("empty", ["webhook-id", "webhook-timestamp", "webhook-signature"])
    def test_an_empty_header_is_a_400(self, client, enqueued, empty):
        headers = signed_headers(BODY, timestamp=NOW)
        headers[empty] = "  "

        assert post(client, WS_URL, BODY, headers).status_code == 400
        assert_nothing_recorded(enqueued)

    def test_a_wrong_secret_is_a_401(self, client, enqueued):
        response = post_signed(client, secret="whsec_not-the-secret")

        assert response.status_code == 401
        assert_nothing_recorded(enqueued)

    @pytest.mark.parametrize(
        "tamper",
        [
            lambda h, b: (h, b.replace(b"completed", b"completeD")),
            lambda h, b: (h, b + b" "),
            lambda h, b: ({**h, "webhook-id": h["webhook-id"] + "x"}, b),
            lambda h, b: ({**h, "webhook-timestamp": str(NOW - 1)}, b),
            lambda h, b: ({**h, "webhook-signature": h["webhook-signature"].upper()}, b),
        ],
        ids=["body", "body-extra-byte", "id", "timestamp", "signature-case"],
    )
    def test_anything_altered_after_signing_is_a_401(self, client, enqueued, tamper):
        headers, body = tamper(signed_headers(BODY, timestamp=NOW), BODY)

        assert post(client, WS_URL, body, headers).status_code == 401
        assert_nothing_recorded(enqueued)

    @pytest.mark.parametrize("offset", [-301, 301, -(10**9), 10**9])
    def test_a_timestamp_outside_the_window_is_a_401(self, client, enqueued, offset):
        response = post_signed(client, timestamp=NOW + offset)

        assert response.status_code == 401
        assert "tolerance" in response.json()["error"]
        assert_nothing_recorded(enqueued)

    @pytest.mark.parametrize("offset", [-300, 300, 0])
    def test_a_timestamp_at_the_edge_of_the_window_is_accepted(self, client, enqueued, offset):
        assert post_signed(client, timestamp=NOW + offset).status_code == 200

    def test_the_window_follows_the_setting(self, client, enqueued, settings):
        settings.IMAGEN_ASSETS = {**settings.IMAGEN_ASSETS, "WEBHOOK_TOLERANCE": 60}

        assert post_signed(client, timestamp=NOW - 61).status_code == 401
        assert post_signed(client, timestamp=NOW - 60).status_code == 200

    def test_a_duplicate_delivery_is_answered_200_and_recorded_once(
        self, client, enqueued, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks(execute=True):
            first = post_signed(client, webhook_id="evt-dup")
        with django_capture_on_commit_callbacks(execute=True):
            second = post_signed(client, webhook_id="evt-dup", timestamp=NOW + 5)

        assert first.status_code == second.status_code == 200
        assert second.json() == {"ok": True, "duplicate": True}
        assert WebhookEvent.objects.count() == 1
        assert len(enqueued) == 1

    @pytest.mark.parametrize(
        "signature",
        [
            "v1",
            "v3",
            "v3,",
            ",",
            "v1,!!!",
            "v1,a,b",
            "v3,a,b",
            "v3,zz",
            "v3,ü" + "a" * 63,
            "v3,\u00e9\u00e8",
            "\u202ev3,abc",
            "v3,\x00\x01",
            "ü" * 100,
            "v3," + "a" * 10_000,
            " ".join(["v3,abc"] * 1000),
            " ".join(["v3," + "0" * 64] * 60),
            "\t v3,abc \t",
        ],
        ids=lambda value: f"{value[:12]!r}..{len(value)}",
    )
    def test_a_malformed_signature_header_is_a_4xx_never_a_500(self, client, enqueued, signature):
        headers = {**signed_headers(BODY, timestamp=NOW), "webhook-signature": signature}

        assert post(client, WS_URL, BODY, headers).status_code in (400, 401)
        assert_nothing_recorded(enqueued)

    @pytest.mark.parametrize(
        "timestamp",
        ["abc", "1.79e9", "0x6AB", "", "١٧٩٠٠٠٠٠٠٠", "9" * 21, "-" + "9" * 20, "1790000000 1"],
    )
    def test_a_malformed_timestamp_is_a_4xx_never_a_500(self, client, enqueued, timestamp):
        headers = {**signed_headers(BODY, timestamp=NOW), "webhook-timestamp": timestamp}

        assert post(client, WS_URL, BODY, headers).status_code in (400, 401)
        assert_nothing_recorded(enqueued)

    @pytest.mark.parametrize("webhook_id", ["ü-id", "x" * 5000, "\udc80"])
    def test_an_odd_webhook_id_is_never_a_500(self, client, enqueued, webhook_id):
        headers = {**signed_headers(BODY, timestamp=NOW), "webhook-id": webhook_id}

        assert post(client, WS_URL, BODY, headers).status_code in (400, 401)

    def test_a_webhook_id_as_long_as_the_column_is_stored_whole(self, client, enqueued):
        response = post_signed(client, webhook_id="e" * MAX_ID_LENGTH)

        assert response.status_code == 200
        assert WebhookEvent.objects.get().event_id == "e" * MAX_ID_LENGTH

    def test_ids_sharing_their_first_200_characters_are_never_made_one(self, client, enqueued):
        """W5: an id is stored whole or refused, never cut short into another's."""
        shared = "e" * MAX_ID_LENGTH

        answers = [post_signed(client, webhook_id=shared + tail) for tail in ("a", "b")]

        assert [a.status_code for a in answers] == [400, 400]
        assert "webhook id longer than 200 characters" in answers[0].json()["error"]
        assert_nothing_recorded(enqueued)

    def test_a_task_id_longer_than_the_column_is_a_400(self, client, enqueued):
        body = BODY.replace(WS_ID.encode(), b"t" * (MAX_ID_LENGTH + 1), 1)

        response = post_signed(client, body)

        assert response.status_code == 400
        assert "task id" in response.json()["error"]
        assert_nothing_recorded(enqueued)

    @pytest.mark.parametrize(
        "body",
        [
            b"{}",
            b'{"status": "completed"}',
            b'{"id": 42, "status": "completed"}',
            b'{"id": "abc", "status": "exploded"}',
            b'{"id": "", "status": "completed"}',
        ],
    )
    def test_a_signed_object_that_is_not_a_prediction_is_a_400(self, client, enqueued, body):
        response = post_signed(client, body)

        assert response.status_code == 400
        assert_nothing_recorded(enqueued)

    def test_a_large_body_without_content_length_is_never_read_past_the_limit(
        self, enqueued, settings
    ):
        settings.IMAGEN_ASSETS = {**settings.IMAGEN_ASSETS, "WEBHOOK_MAX_BODY": 1024}
        stream = CountingStream(b"{" + b" " * 5_000_000 + b"}")
        headers = signed_headers(stream.data, timestamp=NOW)
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": WS_URL,
            "SERVER_NAME": "testserver",
            "SERVER_PORT": "80",
            "wsgi.input": stream,
            "wsgi.url_scheme": "http",
            **{f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()},
        }

        response = views.webhook(WSGIRequest(environ), provider="wavespeed")

        assert response.status_code in (400, 401, 413)
        assert stream.read_bytes <= 1025
        assert_nothing_recorded(enqueued)

    def test_a_content_length_smaller_than_the_body_reads_only_what_it_declares(
        self, enqueued, settings
    ):
        stream = CountingStream(BODY + b" " * 5_000_000)
        headers = signed_headers(BODY, timestamp=NOW)
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": WS_URL,
            "SERVER_NAME": "testserver",
            "SERVER_PORT": "80",
            "CONTENT_LENGTH": str(len(BODY)),
            "wsgi.input": stream,
            "wsgi.url_scheme": "http",
            **{f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()},
        }

        response = views.webhook(WSGIRequest(environ), provider="wavespeed")

        assert response.status_code == 200
        assert stream.read_bytes <= len(BODY) + 1

    def test_a_token_on_the_signed_providers_url_is_a_404(self, client, enqueued):
        assert post(client, WS_URL + "sometoken/", BODY).status_code == 404

    @pytest.mark.parametrize("alias", ["nope", "sandbox", "wave-speed"])
    def test_an_unknown_provider_is_a_404(self, client, enqueued, alias):
        response = post(client, f"/imagen/webhooks/{alias}/", BODY)

        assert response.status_code == 404
        assert_nothing_recorded(enqueued)

    def test_a_provider_that_cannot_be_built_is_a_404(self, client, enqueued, settings):
        config = settings.IMAGEN_ASSETS
        config["PROVIDERS"]["broken"] = {"BACKEND": "imagen_assets.providers.nothing.Here"}
        settings.IMAGEN_ASSETS = config

        assert post(client, "/imagen/webhooks/broken/", BODY).status_code == 404

    def test_a_secret_that_cannot_be_fetched_is_a_503(
        self, client, enqueued, settings, monkeypatch
    ):
        config = settings.IMAGEN_ASSETS
        config["PROVIDERS"]["wavespeed"]["OPTIONS"]["WEBHOOK_SECRET"] = ""
        settings.IMAGEN_ASSETS = config
        http = MockHTTP(
            (
                "GET",
                "https://ws.test/api/v3/webhook/secret",
                json_response(500, {"code": 500, "message": "internal error"}),
            )
        )
        monkeypatch.setattr(
            views, "get_provider", lambda alias: providers.get_provider(alias, client=http.client)
        )

        response = post_signed(client)

        assert response.status_code == 503
        http.assert_done()
        assert_nothing_recorded(enqueued)

    def test_the_secret_never_appears_in_answers_or_logs(self, client, enqueued, caplog):
        caplog.set_level(logging.DEBUG)
        answers = [
            post_signed(client),
            post_signed(client, secret="whsec_wrong"),
            post_signed(client, timestamp=NOW - 999),
            post_signed(client, b"not json"),
            post(client, WS_URL, BODY, {"webhook-id": "x"}),
            post(
                client,
                WS_URL,
                BODY,
                {**signed_headers(BODY, timestamp=NOW), "webhook-signature": "v3,zz"},
            ),
        ]
        right_signature = sign_wavespeed_webhook(WS_SECRET, "evt-1", NOW, BODY).removeprefix("v3,")

        texts = [answer.content.decode() for answer in answers] + [caplog.text]
        for text in texts:
            for secret in SECRET_PARTS:
                assert secret not in text
        assert right_signature not in caplog.text
        assert "Refused a wavespeed webhook" in caplog.text


class CountingStream(io.RawIOBase):
    """A wsgi.input that counts how much of it was read."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.read_bytes = 0
        self._buffer = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self._buffer.read(size)
        self.read_bytes += len(chunk)
        return chunk

    def readline(self, size: int = -1) -> bytes:
        chunk = self._buffer.readline(size)
        self.read_bytes += len(chunk)
        return chunk


class UnstorableWebhookTests:
    """Legal JSON a database cannot store: a 2xx with the text made safe, never a 500."""

    @pytest.mark.parametrize("escape", ["\\u0000", "\\ud800"])
    def test_nul_and_unpaired_surrogates_are_replaced(self, client, enqueued, escape):
        payload = {
            **fixture("wavespeed/webhook_completed.json"),
            "status": "failed",
            "outputs": [],
            "has_nsfw_contents": [],
            "error": "x",
        }
        body = (
            json.dumps(payload)
            .encode()
            .replace(b'"error": "x"', f'"error": "bad{escape}text"'.encode())
        )
        assert escape.encode() in body

        response = post_signed(client, body)

        assert response.status_code == 200
        event = WebhookEvent.objects.get()
        assert event.payload["error"] == "bad\ufffdtext"
        assert event.state["error_message"] == "bad\ufffdtext"

    def test_an_id_the_database_cannot_store_is_still_answered(self, client, enqueued):
        body = BODY.replace(WS_ID.encode(), b"abc\\ud800", 1)

        response = post_signed(client, body)

        assert response.status_code == 200
        assert WebhookEvent.objects.get().provider_task_id == "abc\ufffd"

    def test_a_value_the_database_refuses_is_a_400(self, client, enqueued, monkeypatch):
        from django.db import DataError

        def refuse(**fields):
            raise DataError("value too long for type character varying(200)")

        monkeypatch.setattr(WebhookEvent.objects, "create", refuse)

        response = post_signed(client)

        assert response.status_code == 400
        assert enqueued == []

    def test_a_database_that_is_down_is_a_503(self, client, enqueued, monkeypatch):
        from django.db import OperationalError

        def down(**fields):
            raise OperationalError("could not connect to server")

        monkeypatch.setattr(WebhookEvent.objects, "create", down)

        assert post_signed(client).status_code == 503


class WaveCallbackTests(WebhookViewContractCases):
    alias = "wave"
    provider_task_id = WAVE_ID

    @pytest.fixture
    def task(self):
        return make_task(
            make_campaign(), provider="wave", status="submitted", provider_task_id=WAVE_ID
        )

    @pytest.fixture
    def webhook_url(self, task) -> str:
        return self.url(task.callback_token)

    def valid_body(self) -> bytes:
        return self.body()

    def headers_for(self, body: bytes) -> dict[str, str]:
        return {}  # Wave does not sign; the token in the URL names the task

    @staticmethod
    def url(token: str) -> str:
        return reverse("imagen_assets:webhook_token", kwargs={"provider": "wave", "token": token})

    @staticmethod
    def body(task_id: str = WAVE_ID) -> bytes:
        return json.dumps({**fixture("wave/callback_completed.json"), "task_id": task_id}).encode()

    def test_an_unknown_token_is_a_404(self, client, task, enqueued):
        response = post(client, self.url("not-a-token"), self.body())

        assert response.status_code == 404
        assert_nothing_recorded(enqueued)

    def test_no_token_is_a_404(self, client, task, enqueued):
        assert post(client, "/imagen/webhooks/wave/", self.body()).status_code == 404
        assert_nothing_recorded(enqueued)

    def test_a_token_of_another_providers_task_is_a_404(self, client, enqueued):
        other = make_task(make_campaign("other"), provider="wavespeed")

        assert post(client, self.url(other.callback_token), self.body()).status_code == 404

    def test_a_known_token_records_a_hint_for_its_task(self, client, task, enqueued):
        body = self.body()

        response = post(client, self.url(task.callback_token), body)

        assert response.status_code == 200
        event = WebhookEvent.objects.get()
        assert event.task == task
        assert event.state is None  # unsigned: only a hint to read the task again
        assert event.event_id == hashlib.sha256(body).hexdigest()
        assert event.payload == json.loads(body)  # kept for support

    def test_a_database_that_is_down_when_the_token_is_looked_up_is_a_503(
        self, client, task, enqueued
    ):
        from django.db import OperationalError, connection

        def down(*args, **kwargs):
            raise OperationalError("could not connect to server")

        with connection.execute_wrapper(down):  # every query: the lookup is the first
            response = post(client, self.url(task.callback_token), self.body())

        assert response.status_code == 503  # the sender retries; never a 500
        assert_nothing_recorded(enqueued)

    def test_a_body_naming_another_task_is_a_400(self, client, task, enqueued):
        response = post(client, self.url(task.callback_token), self.body("task-someone-else"))

        assert response.status_code == 400
        assert_nothing_recorded(enqueued)

    def test_a_callback_before_the_task_id_is_saved_is_accepted(self, client, enqueued):
        task = make_task(make_campaign(), provider="wave")

        assert post(client, self.url(task.callback_token), self.body()).status_code == 200
        assert WebhookEvent.objects.get().task == task

    def test_a_task_id_that_is_not_a_string_is_a_400(self, client, task, enqueued):
        assert post(client, self.url(task.callback_token), b'{"task_id": 7}').status_code == 400
        assert_nothing_recorded(enqueued)

    def test_a_body_naming_no_task_is_a_hint_for_the_tokens_task(self, client, task, enqueued):
        assert post(client, self.url(task.callback_token), b"{}").status_code == 200
        event = WebhookEvent.objects.get()
        assert (event.task, event.state) == (task, None)
        assert event.provider_task_id == task.provider_task_id

    def test_a_redelivered_identical_body_is_recorded_once(self, client, task, enqueued):
        first = post(client, self.url(task.callback_token), self.body())
        second = post(client, self.url(task.callback_token), self.body())

        assert (first.status_code, second.status_code) == (200, 200)
        assert second.json()["duplicate"] is True
        assert WebhookEvent.objects.count() == 1

    def test_two_hundred_posts_to_a_finished_tasks_url_make_at_most_the_limit(
        self, client, task, enqueued
    ):
        """Issue 12 as reported: a URL that never expired took 200 posts as 200 events."""
        task.status, task.completed_at = "succeeded", timezone.now()
        task.save()
        url = self.url(task.callback_token)

        answers = [post(client, url, b'{"n": %d}' % n) for n in range(200)]

        assert {a.status_code for a in answers} == {200}
        assert WebhookEvent.objects.count() == conf.DEFAULTS["WEBHOOK_MAX_EVENTS_PER_TASK"]

        task.completed_at = timezone.now() - timedelta(
            seconds=conf.DEFAULTS["WEBHOOK_ACCEPT_AFTER_FINISH"] + 1
        )
        task.save()
        WebhookEvent.objects.all().delete()
        answers = [post(client, url, b'{"n": %d}' % n) for n in range(200)]
        assert {a.status_code for a in answers} == {200}
        assert not WebhookEvent.objects.exists()

    def test_the_token_never_appears_in_answers_or_logs(self, client, task, enqueued, caplog):
        caplog.set_level(logging.DEBUG)
        url = self.url(task.callback_token)

        answers = [
            post(client, url, self.body("task-someone-else")),
            post(client, url, b"nope"),
            post(client, url, self.body()),
        ]

        # Django's own django.request logger prints 4xx paths, as any access log does;
        # the app's loggers must not add the token anywhere else.
        ours = [r.getMessage() for r in caplog.records if r.name.startswith("imagen_assets")]
        for text in [answer.content.decode() for answer in answers] + ours:
            assert task.callback_token not in text
        assert any("does not match this callback URL" in message for message in ours)


@pytest.mark.django_db(transaction=True)
class AutocommitPathTests:
    """What one callback costs the database outside a transaction, as under gunicorn
    (benchmarks.webhooks): the task read with its event count, then the INSERT; no BEGIN or
    COMMIT around a single statement."""

    def test_a_new_event_is_one_read_and_one_insert(self, client, enqueued):
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        task = make_task(make_campaign(), status="processing", provider_task_id=WS_ID)

        with CaptureQueriesContext(connection) as queries:
            response = post_signed(client, webhook_id="msg-autocommit")

        assert response.json() == {"ok": True}
        statements = [query["sql"].split()[0].upper() for query in queries.captured_queries]
        assert statements == ["SELECT", "INSERT"]
        assert WebhookEvent.objects.get().task_id == task.pk
        assert [job.args for job in enqueued] == [(WebhookEvent.objects.get().pk,)]

    def test_a_duplicate_is_answered_and_the_connection_stays_usable(self, client, enqueued):
        make_task(make_campaign(), status="processing", provider_task_id=WS_ID)

        first = post_signed(client, webhook_id="msg-twice")
        again = post_signed(client, webhook_id="msg-twice")

        assert first.json() == {"ok": True}
        assert again.json() == {"ok": True, "duplicate": True}
        assert WebhookEvent.objects.count() == 1  # the connection still answers
        assert len(enqueued) == 1
