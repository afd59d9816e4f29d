"""Talking JSON over HTTP to a provider's API: one client, errors that explain themselves.

:class:`HTTPBackend` is the half of every provider that is not about one vendor: the
``httpx`` client and its lifetime, bearer authentication, the mapping of transport
failures and 4xx/5xx answers to :class:`~imagen_assets.providers.errors.ProviderError`
(what is retryable, what is ambiguous), ``Retry-After``, and reading JSON that is safe to
store. It never leaks the API key: not in errors, not in ``repr``.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import re
import time
from typing import Any, ClassVar

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

    def __init__(self, *, client: httpx.Client | None = None) -> None:
        self._client = client
        self._owns_client = client is None

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

    def expect_status(self, response: httpx.Response, accepted: frozenset[int]) -> None:
        """Raise a :class:`ProviderError` for a 2xx/3xx answer that is not in ``accepted``."""
        if response.status_code not in accepted:
            raise ProviderError(
                self.display_name,
                f"unexpected HTTP status (expected {', '.join(map(str, sorted(accepted)))})",
                status_code=response.status_code,
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
            ) from None
