"""The provider contract (imagen_assets/providers/base.py) as tests, written once.

Like django-anymail's ``tests/webhook_cases.py``: each case below holds behaviour every
provider must have, whatever its wire format. A provider's test module subclasses it and
fills in the hooks (the provider's class, its URLs, the documented answers); everything
vendor-specific stays in that module.

- :class:`ProviderContractCases`: the provider object (options, request body, submit, fetch,
  errors), against the strict fake HTTP server (``mock_http``, tests/providers/conftest.py).
- :class:`WebhookViewContractCases`: the webhook endpoint a provider's callbacks reach.

The cases are named ``*Cases`` so pytest does not collect them on their own
(``python_classes`` in pyproject.toml); their subclasses are named ``*Tests``.
"""

from __future__ import annotations

import email.utils
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from django.test import Client
from django.utils import timezone

from imagen_assets import jobs
from imagen_assets.models import Campaign, GenerationTask, WebhookEvent
from imagen_assets.providers import GenerationParams, Provider, ProviderError, WebhookAuth
from tests.factories import running_wavespeed_task
from tests.mock_http import MockHTTP, fixture, json_response


class ProviderContractCases:
    """What every provider does with its options, a submit, a status read and an error."""

    # -- filled in by the provider's test module -------------------------------------------

    #: The backend under test and its dotted path (what settings name).
    provider_class: ClassVar[type[Provider]]
    backend: ClassVar[str]
    #: How its messages name it.
    display_name: ClassVar[str]
    #: The key :meth:`make_provider` configures, and a task id its answers are about.
    api_key: ClassVar[str]
    task_id: ClassVar[str]
    #: Where it submits, and where it reads a task (``{}``: the task id, quoted).
    submit_url: ClassVar[str]
    status_url: ClassVar[str]
    #: Options holding secrets, with values its ``repr`` must never show.
    secret_options: ClassVar[dict[str, str]]
    #: Its declarations.
    webhook_auth: ClassVar[WebhookAuth]
    supports_negative_prompt: ClassVar[bool]
    #: Its options out of the box: BASE_URL, MODEL, PRICE_PER_IMAGE.
    defaults: ClassVar[tuple[str, str, Decimal]]
    #: BASE_URL as the docs write it (with the API version path or not) -> the base URL used.
    base_url_forms: ClassVar[list[tuple[str, str]]]
    #: The pixel size of its images for each aspect ratio (tests/providers/known_sizes.py).
    output_sizes: ClassVar[dict[str, tuple[int, int]]]
    #: Documented 4xx answers: (HTTP status, fixture, the ProviderError's text).
    client_errors: ClassVar[list[tuple[int, str, str]]]
    #: A documented 429 answer: (fixture, its error code, the ProviderError's text).
    rate_limit: ClassVar[tuple[str, str, str]]
    #: The text of :meth:`server_error_answer` that the ProviderError shows.
    server_error_text: ClassVar[str]

    def make_provider(self, http: MockHTTP | None = None, **options: Any) -> Provider:
        """The provider with :attr:`api_key` (and ``options``), talking to ``http``."""
        raise NotImplementedError

    def documented_submit(self) -> tuple[GenerationParams, dict[str, Any]]:
        """Parameters, and the JSON body the docs show for them."""
        raise NotImplementedError

    def submit_answer(self) -> Any:
        """The documented answer to an accepted submit, about :attr:`task_id`."""
        raise NotImplementedError

    def status_answer(self, status: str | None = None, task_id: str | None = None) -> Any:
        """A documented status answer, its status (and task id) replaced when given."""
        raise NotImplementedError

    def error_body(self, message: str) -> Any:
        """An error answer's JSON body carrying ``message``, in the provider's shape."""
        raise NotImplementedError

    def server_error_answer(self, status: int) -> Any:
        """A documented 5xx answer's JSON body for HTTP ``status``."""
        raise NotImplementedError

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """Run the tests that take ``client_error`` or ``base_url_form`` once per example
        the provider's module lists."""
        if "client_error" in metafunc.fixturenames:
            names = [
                name.rsplit("/", 1)[-1].removesuffix(".json") for _, name, _ in self.client_errors
            ]
            metafunc.parametrize("client_error", self.client_errors, ids=names)
        if "base_url_form" in metafunc.fixturenames:
            metafunc.parametrize(
                "base_url_form", self.base_url_forms, ids=[url for url, _ in self.base_url_forms]
            )

    # -- helpers -----------------------------------------------------------------------------

    def submit(self, http: MockHTTP) -> Any:
        return self.make_provider(http).submit(
            GenerationParams(prompt="a red bicycle"), idempotency_key="k"
        )

    def fetch_refused(self, mock_http: Any, answer: httpx.Response | Exception) -> ProviderError:
        http = mock_http(("GET", self.status_url.format(self.task_id), answer))
        with pytest.raises(ProviderError) as caught:
            self.make_provider(http).fetch(self.task_id)
        return caught.value

    # -- options and declarations ------------------------------------------------------------

    def test_an_unknown_option_names_the_key_and_the_class(self):
        with pytest.raises(ImproperlyConfigured) as caught:
            self.provider_class("main", {"API_KEY": "k", "API_KYE": "k"})

        message = str(caught.value)
        assert "API_KYE" in message
        assert self.backend in message
        assert "IMAGEN_ASSETS['PROVIDERS']['main']['OPTIONS']" in message

    def test_the_api_key_is_required(self):
        assert self.provider_class("p", {}).missing_options() == ["API_KEY"]
        assert self.provider_class("p", {"API_KEY": ""}).missing_options() == ["API_KEY"]
        assert self.provider_class("p", {"API_KEY": "k"}).missing_options() == []

    def test_defaults(self):
        provider = self.provider_class("p", {})

        assert (provider.base_url, provider.model, provider.price_per_image) == self.defaults

    def test_base_url_copied_with_the_api_version_path(self, base_url_form):
        # The docs show both forms; either gives the same request URLs.
        configured, expected = base_url_form

        assert self.provider_class("p", {"BASE_URL": configured}).base_url == expected

    def test_repr_never_shows_the_options(self):
        text = repr(self.provider_class("p", self.secret_options))

        for secret in self.secret_options.values():
            assert secret not in text

    def test_declares_how_its_webhooks_prove_their_origin(self):
        assert self.provider_class.webhook_auth is self.webhook_auth

    def test_declares_whether_it_takes_a_negative_prompt(self):
        assert self.provider_class.supports_negative_prompt is self.supports_negative_prompt

    # -- request body ------------------------------------------------------------------------

    @pytest.mark.parametrize(
        ("params", "words"),
        [
            (GenerationParams(prompt="p", num_images=0), "num_images"),
            (GenerationParams(prompt="p", num_images=5), "num_images"),
            (GenerationParams(prompt="p", aspect_ratio="3:2"), "aspect ratio"),
            (GenerationParams(prompt="p", aspect_ratio="21:9"), "aspect ratio"),
            (GenerationParams(prompt=""), "prompt"),
        ],
        ids=["no-image", "five-images", "ratio-3:2", "ratio-21:9", "empty-prompt"],
    )
    def test_refuses_what_the_service_layer_should_have_refused(self, params, words):
        with pytest.raises(ValueError, match=words):
            self.make_provider().request_body(params, callback_url=None)

    @pytest.mark.parametrize("ratio", ["1:1", "3:4", "4:3", "9:16", "16:9"])
    def test_outputs_the_documented_size(self, ratio):
        assert self.make_provider().output_size(ratio) == self.output_sizes[ratio]

    # -- submit ------------------------------------------------------------------------------

    def test_posts_the_documented_request(self, mock_http):
        http = mock_http(("POST", self.submit_url, json_response(200, self.submit_answer())))
        params, body = self.documented_submit()

        self.make_provider(http).submit(params, idempotency_key="req-1-task-0")

        request = http.last
        assert request.method == "POST"
        assert str(request.url) == self.submit_url
        assert request.headers["Authorization"] == f"Bearer {self.api_key}"
        assert request.headers["Content-Type"] == "application/json"
        assert http.last_json() == body

    @pytest.mark.parametrize("status", [200, 201, 202])
    def test_accepts_any_created_status(self, mock_http, status):
        http = mock_http(("POST", self.submit_url, json_response(status, self.submit_answer())))

        assert self.submit(http).task_id == self.task_id

    def test_refuses_an_unexpected_success_status(self, mock_http):
        http = mock_http(("POST", self.submit_url, httpx.Response(204)))

        with pytest.raises(ProviderError) as caught:
            self.submit(http)

        assert caught.value.status_code == 204

    @pytest.mark.parametrize("text", ["<html>ok</html>", "upstream hiccup"])
    def test_refuses_a_body_that_is_not_json(self, mock_http, text):
        http = mock_http(("POST", self.submit_url, httpx.Response(200, text=text)))

        with pytest.raises(ProviderError, match="not JSON") as caught:
            self.submit(http)

        assert caught.value.status_code == 200

    # -- fetch -------------------------------------------------------------------------------

    def test_gets_the_task_with_the_key(self, mock_http):
        url = self.status_url.format(self.task_id)
        http = mock_http(("GET", url, json_response(200, self.status_answer())))

        self.make_provider(http).fetch(self.task_id)

        assert http.last.method == "GET"
        assert str(http.last.url) == url
        assert http.last.headers["Authorization"] == f"Bearer {self.api_key}"
        assert http.last.content == b""

    @pytest.mark.parametrize(
        ("task_id", "quoted"), [("a/b", "a%2Fb"), ("a/b c?d", "a%2Fb%20c%3Fd")]
    )
    def test_quotes_the_task_id_in_the_path(self, mock_http, task_id, quoted):
        url = self.status_url.format(quoted)
        http = mock_http(("GET", url, json_response(200, self.status_answer(task_id=task_id))))

        self.make_provider(http).fetch(task_id)

        assert http.last.url.raw_path == urlsplit(url).path.encode()

    @pytest.mark.parametrize("status", ["paused", "warming-up"])
    def test_names_an_unknown_status_as_an_unexpected_answer(self, mock_http, status):
        """P6: the poll job reads again a few times, then fails the task (jobs.poll)."""
        answer = json_response(200, self.status_answer(status=status))

        error = self.fetch_refused(mock_http, answer)

        assert f"'{status}'" in str(error)
        assert error.unexpected is True

    def test_an_unknown_status_echoing_the_api_key_is_redacted(self, mock_http):
        """P6, P9: the unexpected answer is shown on the task, never the key in it."""
        answer = json_response(200, self.status_answer(status=f"bad {self.api_key}"))

        error = self.fetch_refused(mock_http, answer)

        assert self.api_key not in str(error)
        assert "[redacted]" in str(error)

    def test_refuses_an_answer_about_another_task(self, mock_http):
        url = self.status_url.format("task-other")
        http = mock_http(("GET", url, json_response(200, self.status_answer())))

        with pytest.raises(ProviderError, match="task-other"):
            self.make_provider(http).fetch("task-other")

    def test_refuses_json_that_is_not_an_object(self, mock_http):
        error = self.fetch_refused(mock_http, json_response(200, [1, 2]))

        assert "not an object" in str(error)
        assert error.unexpected is True

    # -- errors ------------------------------------------------------------------------------

    def test_a_documented_client_error_is_not_retried(self, mock_http, client_error):
        status, name, text = client_error

        error = self.fetch_refused(mock_http, json_response(status, fixture(name)))

        assert error.retryable is False
        assert error.status_code == status
        assert str(error) == text

    @pytest.mark.parametrize("status", [500, 502, 503, 504])
    def test_a_server_error_is_retried(self, mock_http, status):
        error = self.fetch_refused(
            mock_http, json_response(status, self.server_error_answer(status))
        )

        assert error.retryable is True
        assert error.status_code == status
        assert self.server_error_text in str(error)

    @pytest.mark.parametrize(
        ("status", "text"), [(502, "<h1>Bad gateway</h1>"), (503, "Service Unavailable")]
    )
    def test_reads_an_error_that_is_not_json_as_text(self, mock_http, status, text):
        error = self.fetch_refused(mock_http, httpx.Response(status, text=text))

        assert error.retryable is True
        assert str(error) == f"{self.display_name}: HTTP {status}: {text}"

    def test_a_rate_limit_is_retried_after_retry_after_seconds(self, mock_http):
        name, code, text = self.rate_limit

        error = self.fetch_refused(
            mock_http, json_response(429, fixture(name), {"Retry-After": "12"})
        )

        assert error.retryable is True
        assert error.retry_after == 12
        assert error.code == code
        assert str(error) == text

    def test_honours_retry_after_as_http_date(self, mock_http):
        when = datetime.now(UTC) + timedelta(seconds=90)
        header = email.utils.format_datetime(when, usegmt=True)

        error = self.fetch_refused(
            mock_http, json_response(429, self.error_body("slow"), {"Retry-After": header})
        )

        assert 85 <= error.retry_after <= 91

    @pytest.mark.parametrize(
        "exception",
        [httpx.ConnectError("connection refused"), httpx.ReadTimeout("read timed out")],
    )
    def test_network_failures_are_retried(self, mock_http, exception):
        error = self.fetch_refused(mock_http, exception)

        assert error.retryable is True
        assert error.status_code is None
        assert str(error).startswith(f"{self.display_name}: no HTTP answer: ")

    def test_never_shows_the_api_key(self, mock_http):
        echo = self.error_body(f"invalid authentication: Bearer {self.api_key}")

        error = self.fetch_refused(mock_http, json_response(401, echo))

        assert self.api_key not in str(error)
        assert self.api_key not in repr(error)
        assert "[redacted]" in str(error)
        assert self.api_key not in repr(self.make_provider())


def assert_nothing_recorded(enqueued: list[Any]) -> None:
    assert not WebhookEvent.objects.exists()
    assert enqueued == []


@pytest.mark.django_db
class WebhookViewContractCases:
    """What the webhook endpoint does with every provider's callbacks.

    The subclass provides a ``webhook_url`` fixture: where this provider's callbacks for
    a task arrive. Requests go through a client that enforces CSRF checks, as a
    provider's would.
    """

    #: The provider alias in the URL, and the task id :meth:`valid_body` names.
    alias: ClassVar[str]
    provider_task_id: ClassVar[str]

    def valid_body(self) -> bytes:
        """A callback body as the provider sends it."""
        raise NotImplementedError

    def headers_for(self, body: bytes) -> dict[str, str]:
        """The headers the provider sends with ``body`` (its signature, if it signs)."""
        raise NotImplementedError

    def deliver(self, url: str, body: bytes) -> HttpResponse:
        return Client(enforce_csrf_checks=True).generic(
            "POST", url, body, content_type="application/json", headers=self.headers_for(body)
        )

    def distinct_bodies(self, count: int) -> list[bytes]:
        """``count`` valid callbacks about the same task, each a different event."""
        return [
            json.dumps({**json.loads(self.valid_body()), "delivery": n}).encode()
            for n in range(count)
        ]

    def named_task(self, **fields: Any) -> GenerationTask:
        """The task :meth:`valid_body` names (made if the subclass has none), ``fields`` set.

        Request the ``webhook_url`` fixture first: for a token URL it makes the task.
        """
        task = GenerationTask.objects.filter(
            provider=self.alias, provider_task_id=self.provider_task_id
        ).first()
        if task is None:
            campaign, _ = Campaign.objects.get_or_create(slug="callbacks", name="Callbacks")
            task = running_wavespeed_task(campaign, self.provider_task_id, provider=self.alias)
        GenerationTask.objects.filter(pk=task.pk).update(**fields)
        return task

    def test_a_valid_webhook_is_recorded_and_queued_after_commit(
        self, webhook_url, enqueued, django_capture_on_commit_callbacks
    ):
        body = self.valid_body()
        with django_capture_on_commit_callbacks(execute=True):
            response = self.deliver(webhook_url, body)
            assert enqueued == []

        assert response.status_code == 200
        assert response.json() == {"ok": True}
        event = WebhookEvent.objects.get()
        assert (event.provider, event.provider_task_id) == (self.alias, self.provider_task_id)
        assert event.payload == json.loads(body)
        assert event.processed_at is None
        assert [(c.func, c.args) for c in enqueued] == [(jobs.process_webhook, (event.pk,))]

    @pytest.mark.parametrize(
        "body",
        [b"nope", b"not json", b"\xff", b"\xff\xfe\x00garbage", b"[]", b"[1, 2, 3]", b'"a string"'],
    )
    def test_a_body_that_is_not_a_json_object_is_a_400(self, webhook_url, enqueued, body):
        assert self.deliver(webhook_url, body).status_code == 400
        assert_nothing_recorded(enqueued)

    def test_a_body_over_the_limit_is_a_413(self, webhook_url, enqueued, settings):
        settings.IMAGEN_ASSETS = {**settings.IMAGEN_ASSETS, "WEBHOOK_MAX_BODY": 1024}

        response = self.deliver(webhook_url, self.valid_body() + b" " * 2048)

        assert response.status_code == 413
        assert_nothing_recorded(enqueued)

    def test_a_body_at_the_limit_is_read(self, webhook_url, enqueued, settings):
        body = self.valid_body()
        settings.IMAGEN_ASSETS = {**settings.IMAGEN_ASSETS, "WEBHOOK_MAX_BODY": len(body)}

        assert self.deliver(webhook_url, body).status_code == 200

    @pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
    def test_other_methods_are_a_405(self, webhook_url, enqueued, method):
        response = getattr(Client(enforce_csrf_checks=True), method)(webhook_url)

        assert response.status_code == 405
        assert_nothing_recorded(enqueued)

    # -- W11: the site may require a login everywhere else -----------------------------------

    def test_reachable_without_login_under_login_required_middleware(
        self, webhook_url, enqueued, settings
    ):
        """As django-anymail tests it: with ``LoginRequiredMiddleware`` on (whatever the
        suite's settings say), a callback is still taken, not sent to the login page, and
        other methods are still a 405."""
        required = "django.contrib.auth.middleware.LoginRequiredMiddleware"
        settings.MIDDLEWARE = [*(m for m in settings.MIDDLEWARE if m != required), required]
        client = Client(enforce_csrf_checks=True)

        response = self.deliver(webhook_url, self.valid_body())
        others = [client.get(webhook_url), client.put(webhook_url)]

        assert response.status_code == 200, response.get("Location")
        assert WebhookEvent.objects.count() == 1
        assert [other.status_code for other in others] == [405, 405]

    # -- a task's callbacks end (issue 12) ----------------------------------------------------

    def test_a_callback_for_a_task_finished_long_ago_is_answered_200_and_dropped(
        self, webhook_url, enqueued
    ):
        self.named_task(status="succeeded", completed_at=timezone.now() - timedelta(hours=2))

        response = self.deliver(webhook_url, self.valid_body())

        assert response.status_code == 200
        assert response.json() == {"ok": True, "ignored": "the task finished long ago"}
        assert_nothing_recorded(enqueued)

    def test_a_callback_soon_after_the_task_finished_is_recorded_for_it(
        self, webhook_url, enqueued, settings
    ):
        settings.IMAGEN_ASSETS = {**settings.IMAGEN_ASSETS, "WEBHOOK_ACCEPT_AFTER_FINISH": 600}
        task = self.named_task(
            status="failed", completed_at=timezone.now() - timedelta(seconds=590)
        )

        response = self.deliver(webhook_url, self.valid_body())

        assert response.json() == {"ok": True}
        assert WebhookEvent.objects.get().task_id == task.pk
        self.named_task(completed_at=timezone.now() - timedelta(seconds=610))
        late = self.deliver(webhook_url, self.distinct_bodies(1)[0])
        assert late.json()["ignored"] == "the task finished long ago"
        assert WebhookEvent.objects.count() == 1

    def test_one_task_records_at_most_the_limit_of_events(self, webhook_url, enqueued, settings):
        settings.IMAGEN_ASSETS = {**settings.IMAGEN_ASSETS, "WEBHOOK_MAX_EVENTS_PER_TASK": 3}
        task = self.named_task(status="processing")

        answers = [self.deliver(webhook_url, body) for body in self.distinct_bodies(6)]

        assert [a.status_code for a in answers] == [200] * 6
        assert [a.json().get("ignored") for a in answers] == [None] * 3 + [
            "the task has had all the callbacks it may have"
        ] * 3
        assert WebhookEvent.objects.filter(task_id=task.pk).count() == 3
        assert WebhookEvent.objects.count() == 3
