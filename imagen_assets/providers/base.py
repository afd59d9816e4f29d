"""The provider contract: what every text-to-image API module declares and implements.

A provider module knows one vendor's wire format and nothing else. It turns
:class:`~imagen_assets.providers.types.GenerationParams` into one HTTP submit, reads a
task back as a :class:`~imagen_assets.providers.types.ProviderTask`, and checks and reads
that vendor's webhooks. It never touches the database, the queue or storage: the jobs do
that with what it returns.

The contract has two halves, both on :class:`Provider`:

*Declarations* (class attributes, checked when the subclass is defined): its name, the
options it understands and needs, the aspect ratios and images per task it takes, whether
it has a negative prompt, whether a repeated submit is safe (an idempotency key), and how
its webhooks prove where they come from (:class:`WebhookAuth`).

*Hooks* (methods), called in this order by the jobs and the webhook view:
:meth:`~Provider.request_body` and :meth:`~Provider.submit`; :meth:`~Provider.fetch`;
:meth:`~Provider.prepare_webhooks` before a submit that asks for a callback; and, for a
callback, :meth:`~Provider.receive_webhook`, which fixes the order of
:meth:`~Provider.verify_webhook` and :meth:`~Provider.parse_webhook`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal
from enum import Enum
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
from django.core.exceptions import ImproperlyConfigured

from imagen_assets.hosts import ResultHosts
from imagen_assets.imagen_sizes import ASPECT_RATIOS, SIZES_1K
from imagen_assets.providers.errors import WebhookError
from imagen_assets.providers.http import HTTPBackend
from imagen_assets.providers.types import GenerationParams, ProviderTask, WebhookNotice

#: Answers to a submit that mean "accepted". Assumption (docs/providers.md §1.3): Wave does
#: not document the status code of a successful submit; WaveSpeed answers 200.
SUBMIT_OK = frozenset({200, 201, 202})


class WebhookAuth(Enum):
    """How a provider's callbacks prove they come from the provider."""

    #: The body is signed; :meth:`Provider.verify_webhook` checks the signature.
    SIGNATURE = "signature"
    #: Callbacks are unsigned: the callback URL carries an unguessable per-task token, and
    #: only a request whose token names one of our tasks is taken, as a hint to re-read it.
    URL_TOKEN = "url_token"  # noqa: S105  (a name, not a secret)


class Provider(HTTPBackend):
    """Base class of every provider backend.

    Options are validated against :attr:`option_names` when the provider is built, so a
    typo in settings fails loudly; declarations are validated when the subclass is
    defined.
    """

    # -- declarations ----------------------------------------------------------------------

    #: Every OPTIONS key this backend understands.
    option_names: ClassVar[frozenset[str]] = frozenset(
        {
            "API_KEY",
            "BASE_URL",
            "DEADLINE",
            "MAX_CONCURRENCY",
            "MODEL",
            "PRICE_PER_IMAGE",
            "RESULT_HOSTS",
            "TIMEOUT",
        }
    )
    #: OPTIONS that must be non-empty for the provider to be usable.
    required_options: ClassVar[frozenset[str]] = frozenset({"API_KEY"})
    #: OPTIONS values used when settings leave them out.
    default_options: ClassVar[Mapping[str, Any]] = {}
    #: Where the vendor serves its result files (:mod:`imagen_assets.hosts` patterns), used
    #: when ``OPTIONS["RESULT_HOSTS"]`` is not set; the API's own host is always added.
    result_hosts_default: ClassVar[tuple[str, ...]] = ()
    #: The aspect ratios the API takes.
    aspect_ratios: ClassVar[tuple[str, ...]] = ASPECT_RATIOS
    #: The most images one provider task may produce; larger requests are split.
    max_images_per_task: ClassVar[int] = 4
    #: False when the API has no negative prompt: callers must not send one.
    supports_negative_prompt: ClassVar[bool] = True
    #: True when a repeated submit with the same idempotency key creates no second task.
    idempotent_submit: ClassVar[bool] = False
    #: How callbacks are authenticated.
    webhook_auth: ClassVar[WebhookAuth] = WebhookAuth.SIGNATURE
    #: True for the local sandbox: it needs no real key and fetching its secret is expected.
    local_only: ClassVar[bool] = False
    #: True when the API can cancel a task it has not started yet (:meth:`cancel`).
    #: Without it, cancelling only stops waiting: the provider finishes (and bills) the task.
    supports_cancel: ClassVar[bool] = False
    #: The API's version path, which its docs sometimes show as part of the base URL; a
    #: BASE_URL copied with it (``https://www.qingbo.dev/v1``) works all the same.
    api_path: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = f"{cls.__module__}.{cls.__qualname__}"
        for retired in ("callback_needs_token", "signs_webhooks"):
            if retired in vars(cls):
                # Silently ignoring it would change how the provider's callbacks are
                # checked (a token URL becoming a plain one).
                raise TypeError(
                    f"{name}: {retired} is replaced by webhook_auth = WebhookAuth.URL_TOKEN "
                    "or WebhookAuth.SIGNATURE."
                )
        if not cls.required_options <= cls.option_names:
            raise TypeError(f"{name}: required_options must be among option_names.")
        if not set(cls.default_options) <= cls.option_names:
            raise TypeError(f"{name}: default_options must be among option_names.")
        if not set(cls.aspect_ratios) <= set(ASPECT_RATIOS):
            raise TypeError(f"{name}: aspect_ratios must be Imagen aspect ratios.")
        if cls.max_images_per_task < 1:
            raise TypeError(f"{name}: max_images_per_task must be at least 1.")
        if not isinstance(cls.webhook_auth, WebhookAuth):
            raise TypeError(f"{name}: webhook_auth must be a WebhookAuth.")

    def __init__(
        self,
        alias: str,
        options: Mapping[str, Any] | None = None,
        *,
        client: httpx.Client | None = None,
    ) -> None:
        options = dict(options or {})
        unknown = sorted(set(options) - self.option_names)
        if unknown:
            raise ImproperlyConfigured(
                f"IMAGEN_ASSETS['PROVIDERS'][{alias!r}]['OPTIONS'] has unknown key(s) "
                f"{', '.join(unknown)} for {type(self).__module__}.{type(self).__qualname__}; "
                f"known keys: {', '.join(sorted(self.option_names))}."
            )
        super().__init__(client=client)
        self.alias = alias
        self.options = {**self.default_options, **options}

    def __repr__(self) -> str:  # never show the options: they hold the API key
        return f"<{type(self).__name__} {self.alias!r}>"

    def __enter__(self) -> Provider:
        return self

    # -- configuration ---------------------------------------------------------------------

    def missing_options(self) -> list[str]:
        """Required options that are empty: the provider cannot be used until they are set."""
        return sorted(name for name in self.required_options if not self.options.get(name))

    @property
    def model(self) -> str:
        return str(self.options.get("MODEL", ""))

    @property
    def base_url(self) -> str:
        base_url = str(self.options.get("BASE_URL", "")).rstrip("/")
        return base_url.removesuffix(self.api_path) if self.api_path else base_url

    @property
    def max_concurrency(self) -> int | None:
        """``OPTIONS["MAX_CONCURRENCY"]``: the most tasks in flight at once across every
        worker (:mod:`imagen_assets.capacity`); None for no cap (check E037 refuses a value
        that is not a whole number of at least 1)."""
        value = self.options.get("MAX_CONCURRENCY")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return None
        return value

    @property
    def price_per_image(self) -> Decimal:
        return Decimal(str(self.options.get("PRICE_PER_IMAGE", "0")))

    def result_hosts(self) -> ResultHosts:
        """The hosts this provider's result URLs may point at (row D1): ``RESULT_HOSTS``
        (or :attr:`result_hosts_default`), plus the host of ``BASE_URL``, which is trusted
        with the API key already (and is where the sandbox serves its images)."""
        configured = self.options.get("RESULT_HOSTS")
        if isinstance(configured, str):  # one host given bare (check E036 says so)
            configured = [configured]
        patterns = list(self.result_hosts_default if configured is None else configured)
        api_host = urlsplit(self.base_url).hostname
        if api_host:
            patterns.append(api_host)
        setting = f"IMAGEN_ASSETS['PROVIDERS'][{self.alias!r}]['OPTIONS']['RESULT_HOSTS']"
        return ResultHosts.of((str(pattern) for pattern in patterns), setting)

    def output_size(self, aspect_ratio: str) -> tuple[int, int]:
        """Pixel size this provider returns for ``aspect_ratio``."""
        return SIZES_1K[aspect_ratio]

    def check_params(self, params: GenerationParams) -> None:
        """Raise ``ValueError`` for parameters this provider cannot take (the service layer
        should have refused them already): every provider's rules, in one place."""
        name = self.display_name
        if not params.prompt:
            raise ValueError(f"{name}: the prompt is empty.")
        if params.negative_prompt and not self.supports_negative_prompt:
            raise ValueError(f"{name} has no negative prompt; leave it empty.")
        if not 1 <= params.num_images <= self.max_images_per_task:
            raise ValueError(
                f"{name}: num_images must be 1 to {self.max_images_per_task}, "
                f"not {params.num_images}."
            )
        if params.aspect_ratio not in self.aspect_ratios:
            raise ValueError(
                f"{name}: unknown aspect ratio {params.aspect_ratio!r}; "
                f"use one of {', '.join(self.aspect_ratios)}."
            )

    # -- hooks: generation -----------------------------------------------------------------

    def request_body(self, params: GenerationParams, *, callback_url: str | None) -> dict[str, Any]:
        """The exact JSON body :meth:`submit` sends (recorded on the task for reproduction)."""
        raise NotImplementedError(f"{type(self).__name__} must implement request_body()")

    def submit(
        self,
        params: GenerationParams,
        *,
        idempotency_key: str,
        callback_url: str | None = None,
    ) -> ProviderTask:
        """Start one task. Returns at least its id; raises :class:`ProviderError`."""
        raise NotImplementedError(f"{type(self).__name__} must implement submit()")

    def fetch(self, task_id: str) -> ProviderTask:
        """Read a task's current state; raises :class:`ProviderError`."""
        raise NotImplementedError(f"{type(self).__name__} must implement fetch()")

    def cancel(self, task_id: str) -> bool:
        """Ask the provider to cancel a task (only when :attr:`supports_cancel`).

        True: cancelled, nothing is charged. False: the provider has started it and will
        not cancel it (it finishes and bills it). Raises :class:`ProviderError` when the
        call fails (the outcome is then unknown).
        """
        raise NotImplementedError(f"{type(self).__name__} cannot cancel a task")

    # -- hooks: webhooks -------------------------------------------------------------------

    def prepare_webhooks(self) -> None:
        """Get ready to verify this provider's webhooks before asking for one (e.g. fetch
        and cache a signing secret). Called before a submit with a callback URL; a
        :class:`ProviderError` here is not fatal: verifying can still try again. No-op by
        default."""

    def check_callback_url(self, token_matched: bool | None) -> None:
        """Refuse (404) a callback URL this provider's :attr:`webhook_auth` does not allow.

        ``token_matched`` is None when the URL carries no token, else whether the token
        names one of this provider's tasks (looked up by the caller, who owns the
        database). Called before the body is read.
        """
        if self.webhook_auth is WebhookAuth.URL_TOKEN:
            if not token_matched:
                raise WebhookError("unknown callback", 404)
        elif token_matched is not None:
            raise WebhookError("unknown callback", 404)

    def receive_webhook(
        self, headers: Mapping[str, str], body: bytes, *, expected_task_id: str = ""
    ) -> WebhookNotice:
        """Verify, then read, a callback: the one order every provider follows.

        ``expected_task_id`` is the provider task id the callback URL's token names (empty
        when unknown); a body naming another task is refused (400). Raises
        :class:`WebhookError` with the 4xx to answer, or :class:`ProviderError` when the
        provider could not be asked for what verifying needs (answer 503).
        """
        self.verify_webhook(headers, body)
        notice = self.parse_webhook(headers, body)
        if expected_task_id and notice.task_id and notice.task_id != expected_task_id:
            raise WebhookError("task id does not match this callback URL", 400)
        if self.webhook_auth is WebhookAuth.URL_TOKEN and notice.task is not None:
            # An unsigned body proves nothing: it can only be a hint to read the task.
            notice = replace(notice, task=None)
        return notice

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> None:
        """Raise :class:`WebhookError` unless the request really comes from the provider."""
        raise NotImplementedError(f"{type(self).__name__} must implement verify_webhook()")

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookNotice:
        """Read a verified webhook; raise :class:`WebhookError` (400) on a malformed body."""
        raise NotImplementedError(f"{type(self).__name__} must implement parse_webhook()")
