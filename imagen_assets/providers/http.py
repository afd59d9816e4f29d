"""Talking JSON over HTTP to a provider's API: one client, errors that explain themselves.

:class:`HTTPBackend` is the half of every provider that is not about one vendor: the
``httpx`` client and its lifetime, bearer authentication, the mapping of transport
failures and 4xx/5xx answers to :class:`~imagen_assets.providers.errors.ProviderError`
(what is retryable, what is ambiguous), ``Retry-After``, and reading JSON that is safe to
store. It never leaks the API key: not in errors, not in ``repr``.

Every call has a total deadline (``OPTIONS["DEADLINE"]``, else ``HTTP_DEADLINE``) besides
httpx's per-phase timeouts: a server that drips a byte a second answers every read within
the read timeout and would otherwise hold a worker (and a submit's lease) for as long as it
likes (docs/reliability.md P5). httpx and httpcore have no total timeout (httpcore#936 was
declined, httpx#1450 is open), so the client's transport wraps httpcore's network backend
(its documented seam for custom I/O): every connect, TLS handshake, read and write is given
at most the time left before the deadline, and none starts once it has passed.
"""

from __future__ import annotations

import datetime
import email.utils
import functools
import math
import re
import ssl
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ClassVar

import httpcore
import httpx

from imagen_assets import __version__, conf
from imagen_assets.providers.errors import ProviderError

#: Longest wait a provider may ask for with Retry-After; a larger value is clamped.
MAX_RETRY_AFTER = 3600.0

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


# The monotonic time the current call must be over by (None: no deadline), per thread and
# per context, so one client's connections can serve calls with different deadlines.
_deadline: ContextVar[float | None] = ContextVar("imagen_assets_http_deadline", default=None)


def _time_left(timeout: float | None, expired: type[Exception]) -> float | None:
    """``timeout`` cut down to the time left before the current deadline; raise ``expired``
    when none is left."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired("the call's total deadline has passed")
    return left if timeout is None else min(timeout, left)


@contextmanager
def deadline(seconds: float) -> Iterator[float]:
    """Calls made through a :class:`DeadlineTransport` inside this block must be over within
    ``seconds``; yields the monotonic time they must end by."""
    end = time.monotonic() + seconds
    token = _deadline.set(end)
    try:
        yield end
    finally:
        _deadline.reset(token)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _time_left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _time_left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        left = _time_left(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, left))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        left = _time_left(timeout, httpcore.ConnectTimeout)
        stream = self._backend.connect_tcp(host, port, left, local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        left = _time_left(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._backend.connect_unix_socket(path, left, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The TLS context every client of this process verifies with (httpx's defaults: the
    certifi bundle, or ``SSL_CERT_FILE``/``SSL_CERT_DIR``). Building one reads the whole CA
    bundle, about 20 ms of CPU; a transport built without one pays that each time, and a
    job pays it for its provider call and again for each of a task's downloads. The worker
    builds it once before it forks (:class:`imagen_assets.worker.Worker`), so every job
    inherits it."""
    return httpx.create_ssl_context()


class DeadlineTransport(httpx.HTTPTransport):
    """httpx's own transport, whose network I/O honours :func:`deadline`, verifying with
    this process's one :func:`tls_context`.

    httpx does not yet take a network backend (encode/httpx#3749), so the one its connection
    pool was built with is wrapped; the pool hands it to every connection it opens.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("verify", tls_context())
        super().__init__(**kwargs)
        pool = self._pool
        pool._network_backend = _DeadlineBackend(pool._network_backend)


class HTTPBackend:
    """An API client owning (or borrowing) one ``httpx.Client``; use it as a context
    manager so its connections are closed.

    Subclasses set :attr:`display_name` and ``options`` (``API_KEY``, ``TIMEOUT``) and may
    override :meth:`auth_headers`, :meth:`parse_error_body` and :meth:`error_from_response`
    for their vendor's conventions.
    """

    #: Human name used in messages ("Wave", "WaveSpeed AI").
    display_name: ClassVar[str] = "provider"
    options: dict[str, Any]
    #: The key of ``IMAGEN_ASSETS["PROVIDERS"]`` this client was built from, if any.
    alias: str = ""

    def __init__(self, *, client: httpx.Client | None = None) -> None:
        self._client = client
        self._owns_client = client is None

    @property
    def timeout(self) -> float:
        """Seconds for each phase of an API call: ``OPTIONS["TIMEOUT"]``, else
        ``IMAGEN_ASSETS["HTTP_TIMEOUT"]``."""
        return float(self.options.get("TIMEOUT") or conf.get("HTTP_TIMEOUT"))

    @property
    def deadline(self) -> float:
        """Total seconds one API call may take, connecting to the answer's last byte:
        ``OPTIONS["DEADLINE"]``, else ``IMAGEN_ASSETS["HTTP_DEADLINE"]``."""
        return float(self.options.get("DEADLINE") or conf.get("HTTP_DEADLINE"))

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                timeout=httpx.Timeout(self.timeout, connect=min(10.0, self.timeout)),
                headers={"User-Agent": f"imagen-assets/{__version__}"},
                transport=DeadlineTransport(),
            )
        return self._client

    def close(self) -> None:
        if self._client is not None and self._owns_client:
            self._client.close()
            self._client = None

    def __enter__(self) -> Any:
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
        limit = self.deadline
        try:
            with deadline(limit) as end:
                response = self.client.request(method, url, headers=headers, **kwargs)
        except httpx.TimeoutException as exc:
            sent = not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
            if time.monotonic() >= end:
                what = f"gave no complete answer within {limit:g} s (the deadline of one call)"
            else:
                what = f"timed out ({type(exc).__name__})"
            raise ProviderError(self.display_name, what, retryable=True, ambiguous=sent) from None
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
            alias=self.alias,
        )

    def parse_error_body(self, response: httpx.Response) -> tuple[str, str]:
        """(code, message) from an error body; subclasses know their vendor's envelope."""
        return "", response.text[:300]

    def expect_status(self, response: httpx.Response, accepted: frozenset[int]) -> None:
        """Raise a :class:`ProviderError` for a 2xx/3xx answer that is not in ``accepted``."""
        if response.status_code not in accepted:
            raise ProviderError(
                self.display_name,
                f"unexpected HTTP status (expected {', '.join(map(str, sorted(accepted)))})",
                status_code=response.status_code,
                unexpected=True,
            )

    def json(self, response: httpx.Response) -> Any:
        """The answer's JSON, made :func:`storable`; a body that is not JSON is retryable."""
        try:
            return storable(response.json())
        except ValueError:
            raise ProviderError(
                self.display_name,
                "answered with a body that is not JSON",
                status_code=response.status_code,
                retryable=True,
                unexpected=True,
            ) from None
