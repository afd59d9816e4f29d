"""The provider contract: what every text-to-image API module implements.

A provider module knows one vendor's wire format and nothing else. It turns
:class:`GenerationParams` into one HTTP submit, reads a task back as a
:class:`ProviderTask`, and checks and reads that vendor's webhooks. It never touches the
database, the queue or storage: the jobs do that with what it returns.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, ClassVar

import httpx
from django.core.exceptions import ImproperlyConfigured

from imagen_assets import __version__, conf
from imagen_assets.imagen_sizes import ASPECT_RATIOS, SIZES_1K

#: Answers to a submit that mean "accepted". Assumption (PROVIDERS.md §1.3): Wave does not
#: document the status code of a successful submit; WaveSpeed answers 200.
SUBMIT_OK = frozenset({200, 201, 202})

# Legal in JSON, refused by PostgreSQL (NUL) or by UTF-8 itself (unpaired surrogates).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: Any) -> Any:
    """Parsed JSON with every string (keys too) made safe to store: NUL characters and
    unpaired surrogates become U+FFFD. Anything from a provider goes through this, so a
    stray ``\u0000`` in an error text cannot break a database write (a 500 or a job
    failing forever)."""
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {storable(key): storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [storable(item) for item in value]
    return value


class TaskStatus(StrEnum):
    """Our own, provider-neutral task states, in the order a task moves through them."""

    QUEUED = "queued"
    SUBMITTED = "submitted"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    @property
    def rank(self) -> int:
        """Position in the lifecycle; a task's rank never decreases."""
        return _RANK[self]


TERMINAL_STATUSES = frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED})
_RANK = {
    TaskStatus.QUEUED: 0,
    TaskStatus.SUBMITTED: 1,
    TaskStatus.PROCESSING: 2,
    TaskStatus.SUCCEEDED: 3,
    TaskStatus.FAILED: 3,
    TaskStatus.CANCELLED: 3,
}


@dataclass(frozen=True)
class GenerationParams:
    """What the user asked for, for one provider task (at most ``max_images_per_task``)."""

    prompt: str
    aspect_ratio: str = "1:1"
    num_images: int = 1
    seed: int | None = None
    negative_prompt: str = ""


@dataclass(frozen=True)
class Output:
    """One image the provider produced: where to fetch it, and its NSFW flag if reported."""

    url: str
    nsfw: bool = False


@dataclass(frozen=True)
class ProviderTask:
    """A provider task as read from a submit answer, a status read or a signed webhook."""

    task_id: str
    status: TaskStatus
    progress: int | None = None
    outputs: tuple[Output, ...] = ()
    error_code: str = ""
    error_message: str = ""
    cost: Decimal | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def terminal(self) -> bool:
        return self.status.terminal


@dataclass(frozen=True)
class WebhookNotice:
    """What a verified webhook told us.

    ``task`` is set only when the body is authoritative (a signed payload). When it is
    ``None`` the webhook is a hint and the task must be re-read from the provider.
    """

    event_id: str
    task_id: str
    task: ProviderTask | None = None
    #: The body as parsed, kept on the WebhookEvent for support.
    payload: Mapping[str, Any] = field(default_factory=dict)


class ProviderError(Exception):
    """A provider call failed. The message is safe to show in the admin: no secrets."""

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        status_code: int | None = None,
        code: str = "",
        retryable: bool = False,
        retry_after: float | None = None,
        ambiguous: bool = False,
    ) -> None:
        self.provider = provider
        # True when the request may have been acted on although we got no answer (a read
        # timeout after sending): retrying a submit is then only safe with idempotency.
        self.ambiguous = ambiguous
        self.message = message
        self.status_code = status_code
        self.code = code
        self.retryable = retryable
        self.retry_after = retry_after
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"HTTP {self.status_code}" if self.status_code else "no HTTP answer"
        code = f" [{self.code}]" if self.code else ""
        return f"{self.provider}: {where}{code}: {self.message}"


class WebhookError(Exception):
    """A webhook was refused. ``status_code`` is the 4xx to answer with."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        self.message = message
        self.status_code = status_code
        super().__init__(message)


#: Longest wait a provider may ask for with Retry-After; a larger value is clamped.
MAX_RETRY_AFTER = 3600.0


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date).

    Nonsense (negative, infinite, NaN, unparsable) gives None; waits are clamped to an hour.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:  # HTTP dates are always GMT
            when = when.replace(tzinfo=datetime.UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


class Provider:
    """Base class of every provider backend.

    Subclasses set the class attributes and implement :meth:`submit`, :meth:`fetch`,
    :meth:`verify_webhook` and :meth:`parse_webhook`. Options are validated against
    ``option_names`` when the provider is built, so a typo in settings fails loudly.
    """

    #: Human name used in messages ("Wave", "WaveSpeed AI").
    display_name: ClassVar[str] = "provider"
    #: Every OPTIONS key this backend understands.
    option_names: ClassVar[frozenset[str]] = frozenset(
        {"API_KEY", "BASE_URL", "MODEL", "PRICE_PER_IMAGE", "TIMEOUT"}
    )
    #: OPTIONS that must be non-empty for the provider to be usable.
    required_options: ClassVar[frozenset[str]] = frozenset({"API_KEY"})
    default_options: ClassVar[Mapping[str, Any]] = {}
    aspect_ratios: ClassVar[tuple[str, ...]] = ASPECT_RATIOS
    max_images_per_task: ClassVar[int] = 4
    #: True when the callback URL must carry the per-task token (unsigned callbacks).
    callback_needs_token: ClassVar[bool] = False
    #: True when webhooks are signed and a secret must be configured or fetchable.
    signs_webhooks: ClassVar[bool] = False
    #: True when a repeated submit with the same idempotency key creates no second task.
    idempotent_submit: ClassVar[bool] = False
    #: True for the local sandbox: it needs no real key and fetching its secret is expected.
    local_only: ClassVar[bool] = False
    #: False when the API has no negative prompt: callers must not send one.
    supports_negative_prompt: ClassVar[bool] = True
    #: The API's version path, which its docs sometimes show as part of the base URL; a
    #: BASE_URL copied with it (``https://www.qingbo.dev/v1``) works all the same.
    api_path: ClassVar[str] = ""

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
        self.alias = alias
        self.options: dict[str, Any] = {**self.default_options, **options}
        self._client = client
        self._owns_client = client is None

    # -- configuration -------------------------------------------------------------------

    def __repr__(self) -> str:  # never show the options: they hold the API key
        return f"<{type(self).__name__} {self.alias!r}>"

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
    def price_per_image(self) -> Decimal:
        return Decimal(str(self.options.get("PRICE_PER_IMAGE", "0")))

    def output_size(self, aspect_ratio: str) -> tuple[int, int]:
        """Pixel size this provider returns for ``aspect_ratio``."""
        return SIZES_1K[aspect_ratio]

    # -- HTTP ----------------------------------------------------------------------------

    @property
    def timeout(self) -> float:
        """Seconds for each phase of an API call: ``OPTIONS["TIMEOUT"]``, else
        ``IMAGEN_ASSETS["HTTP_TIMEOUT"]``."""
        return float(self.options.get("TIMEOUT") or conf.get("HTTP_TIMEOUT"))

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                timeout=httpx.Timeout(self.timeout, connect=min(10.0, self.timeout)),
                headers={"User-Agent": f"imagen-assets/{__version__}"},
            )
        return self._client

    def close(self) -> None:
        if self._client is not None and self._owns_client:
            self._client.close()
            self._client = None

    def __enter__(self) -> Provider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def redact(self, text: str) -> str:
        """``text`` (from the provider) with the API key blanked out, should it echo it."""
        key = str(self.options.get("API_KEY") or "")
        return text.replace(key, "[redacted]") if len(key) >= 4 else text

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.options.get('API_KEY', '')}"}

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One HTTP call; any failure becomes a :class:`ProviderError` (never leaks the key)."""
        headers = {**self.auth_headers(), **kwargs.pop("headers", {})}
        try:
            response = self.client.request(method, url, headers=headers, **kwargs)
        except httpx.TimeoutException as exc:
            raise ProviderError(
                self.display_name,
                f"timed out ({type(exc).__name__})",
                retryable=True,
                ambiguous=not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout),
            ) from None
        except httpx.TransportError as exc:
            sent = not isinstance(exc, httpx.ConnectError)
            raise ProviderError(
                self.display_name,
                f"{'connection lost' if sent else 'could not connect'} ({type(exc).__name__})",
                retryable=True,
                ambiguous=sent,
            ) from None
        except httpx.RequestError as exc:  # e.g. an answer that cannot be decoded
            raise ProviderError(
                self.display_name,
                f"the answer could not be read ({type(exc).__name__})",
                retryable=True,
                ambiguous=True,
            ) from None
        if response.status_code >= 400:
            raise self.error_from_response(response)
        return response

    def error_from_response(self, response: httpx.Response) -> ProviderError:
        """Turn a 4xx/5xx answer into a readable error; 429 and 5xx are retryable."""
        code, message = self.parse_error_body(response)
        status = response.status_code
        return ProviderError(
            self.display_name,
            message or response.reason_phrase or "error",
            status_code=status,
            code=code,
            retryable=status == 429 or status >= 500,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )

    def parse_error_body(self, response: httpx.Response) -> tuple[str, str]:
        """(code, message) from an error body; subclasses know their vendor's envelope."""
        return "", response.text[:300]

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

    def expect_status(self, response: httpx.Response, accepted: frozenset[int]) -> None:
        """Raise a :class:`ProviderError` for a 2xx/3xx answer that is not in ``accepted``."""
        if response.status_code not in accepted:
            raise ProviderError(
                self.display_name,
                f"unexpected HTTP status (expected {', '.join(map(str, sorted(accepted)))})",
                status_code=response.status_code,
            )

    def json(self, response: httpx.Response) -> Any:
        try:
            return storable(response.json())
        except ValueError:
            raise ProviderError(
                self.display_name,
                "answered with a body that is not JSON",
                status_code=response.status_code,
                retryable=True,
            ) from None

    # -- the contract --------------------------------------------------------------------

    def request_body(self, params: GenerationParams, *, callback_url: str | None) -> dict[str, Any]:
        """The exact JSON body :meth:`submit` sends (recorded on the task for reproduction)."""
        raise NotImplementedError

    def submit(
        self,
        params: GenerationParams,
        *,
        idempotency_key: str,
        callback_url: str | None = None,
    ) -> ProviderTask:
        """Start one task. Returns at least its id; raises :class:`ProviderError`."""
        raise NotImplementedError

    def fetch(self, task_id: str) -> ProviderTask:
        """Read a task's current state; raises :class:`ProviderError`."""
        raise NotImplementedError

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> None:
        """Raise :class:`WebhookError` unless the request really comes from the provider."""
        raise NotImplementedError

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookNotice:
        """Read a verified webhook; raise :class:`WebhookError` (400) on a malformed body."""
        raise NotImplementedError
