"""WaveSpeed AI API v3, Imagen 4 models (default ``wavespeed-ai/imagen4``).

Wire format: docs/providers.md section 2 and the seed page ``docs/seeds/wavespeed-imagen4.md``.
``POST /api/v3/{model}`` starts a prediction, ``GET /api/v3/predictions/{id}/result`` reads
it back; both answer ``{"code": 200, "message": "success", "data": {prediction}}``.
Webhooks carry the bare prediction, signed with WaveSpeed's own ``v3`` HMAC scheme.

WaveSpeed has no idempotency mechanism: a submit retried after an ambiguous failure (no
answer after the request was sent, a 504 from the gateway while the prediction may still
be created behind it, a 2xx body that cannot be read) may create, and bill, a second
prediction, so those are never retried. Other 5xx answers and 429 are retried, as for any
API (the request was refused). The idempotency key :meth:`WaveSpeedProvider.submit`
receives is therefore ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured

from imagen_assets import conf
from imagen_assets.imagen_sizes import SIZES_1K, SIZES_2K
from imagen_assets.providers.base import SUBMIT_OK, Provider, WebhookAuth
from imagen_assets.providers.errors import ProviderError, WebhookError
from imagen_assets.providers.http import storable
from imagen_assets.providers.types import GenerationParams, Output, ProviderTask, WebhookNotice
from imagen_assets.status import TaskStatus

# docs/providers.md §2.4: the API documents created/processing/completed/failed; the official
# SDK also treats cancelled, timeout and (2.0.5) deleted as terminal.
STATUSES: Mapping[str, TaskStatus] = {
    "created": TaskStatus.SUBMITTED,
    "processing": TaskStatus.PROCESSING,
    "completed": TaskStatus.SUCCEEDED,
    "failed": TaskStatus.FAILED,
    "timeout": TaskStatus.FAILED,
    "cancelled": TaskStatus.CANCELLED,
    "deleted": TaskStatus.CANCELLED,
}
# Said when the provider ends a task this way without an error text of its own.
_DEFAULT_MESSAGES = {
    "timeout": "the prediction timed out at WaveSpeed",
    "deleted": "the prediction was deleted at WaveSpeed",
}

# google/* models take a ``resolution`` of 1k or 2k (docs/providers.md §2.2).
RESOLUTION_MODELS = frozenset({"google/imagen4", "google/imagen4-ultra"})
RESOLUTIONS = ("1k", "2k")
SEED_RANGE = range(-1, 2_147_483_648)

logger = logging.getLogger(__name__)

SECRET_CACHE_SECONDS = 24 * 60 * 60
# A fetched secret that no longer matches is fetched again at most this often, so a flood of
# forged webhooks cannot turn into a flood of calls to the API.
SECRET_REFRESH_SECONDS = 5 * 60
# Real headers hold one or a few ``v3,<64 hex>`` entries; anything far longer is refused
# before any work is done on it.
MAX_SIGNATURE_HEADER = 4096
_TIMESTAMP = re.compile(r"-?[0-9]{1,20}")


class WaveSpeedProvider(Provider):
    """WaveSpeed AI's Imagen 4 endpoints.

    Webhooks are signed; the secret is ``OPTIONS["WEBHOOK_SECRET"]`` (a string, or a list
    of strings while rotating) or, when that is empty, fetched from the API with the key
    and cached for a day.
    """

    display_name = "WaveSpeed AI"
    option_names = Provider.option_names | {"WEBHOOK_SECRET", "RESOLUTION"}
    default_options: ClassVar[Mapping[str, Any]] = {
        "BASE_URL": "https://api.wavespeed.ai",
        "MODEL": "wavespeed-ai/imagen4",
        "PRICE_PER_IMAGE": "0.04",
    }
    webhook_auth = WebhookAuth.SIGNATURE
    # UNCONFIRMED (docs/providers.md §2.10): the docs' example outputs are on the CloudFront
    # distribution below, other pages show cdn.wavespeed.ai; the vendor's domain is trusted
    # with its subdomains. Not *.cloudfront.net: anyone can serve files from there.
    result_hosts_default: ClassVar[tuple[str, ...]] = (
        "d2p7pge43lyniu.cloudfront.net",
        ".wavespeed.ai",
    )
    api_path = "/api/v3"

    def __init__(
        self,
        alias: str,
        options: Mapping[str, Any] | None = None,
        *,
        client: httpx.Client | None = None,
    ) -> None:
        super().__init__(alias, options, client=client)
        where = f"IMAGEN_ASSETS['PROVIDERS'][{alias!r}]['OPTIONS']"
        resolution = self.resolution
        if resolution and resolution not in RESOLUTIONS:
            raise ImproperlyConfigured(
                f"{where}['RESOLUTION'] must be one of {', '.join(RESOLUTIONS)}, "
                f"not {resolution!r}."
            )
        if resolution and self.model not in RESOLUTION_MODELS:
            raise ImproperlyConfigured(
                f"{where}['RESOLUTION'] is only understood by "
                f"{', '.join(sorted(RESOLUTION_MODELS))}, not by {self.model!r}."
            )
        secret = self.options.get("WEBHOOK_SECRET")
        if not (
            secret is None
            or isinstance(secret, str)
            or (isinstance(secret, list | tuple) and all(isinstance(s, str) for s in secret))
        ):
            raise ImproperlyConfigured(
                f"{where}['WEBHOOK_SECRET'] must be a string or a list of strings."
            )

    @property
    def resolution(self) -> str:
        return str(self.options.get("RESOLUTION") or "").lower()

    def output_size(self, aspect_ratio: str) -> tuple[int, int]:
        if self.resolution == "2k":
            return SIZES_2K[aspect_ratio]
        # Assumption (docs/providers.md §3): wavespeed-ai/imagen4's resolution is unconfirmed;
        # it, google/imagen4-fast and the google/* default are 1K.
        return SIZES_1K[aspect_ratio]

    # -- submit --------------------------------------------------------------------------

    def request_body(self, params: GenerationParams, *, callback_url: str | None) -> dict[str, Any]:
        """The seed's body. ``callback_url`` is not in it: it goes in the ``webhook`` query.

        Raises ``ValueError`` for parameters the service layer should have refused.
        """
        self.check_params(params)
        if params.seed is not None and params.seed not in SEED_RANGE:
            raise ValueError(
                f"{self.display_name}: seed must be -1 to 2147483647, not {params.seed}."
            )
        body: dict[str, Any] = {"prompt": params.prompt}
        if params.negative_prompt:
            body["negative_prompt"] = params.negative_prompt
        body["aspect_ratio"] = params.aspect_ratio
        body["num_images"] = params.num_images
        if params.seed is not None:
            body["seed"] = params.seed
        if self.resolution:
            body["resolution"] = self.resolution
        return body

    def submit(
        self,
        params: GenerationParams,
        *,
        idempotency_key: str,
        callback_url: str | None = None,
    ) -> ProviderTask:
        """``POST /api/v3/{model}[?webhook=...]``.

        ``idempotency_key`` is ignored: WaveSpeed has no such mechanism, so a retry after
        an ambiguous failure may start a second, separately billed prediction.
        """
        body = self.request_body(params, callback_url=callback_url)
        try:
            response = self.request(
                "POST",
                f"{self.base_url}/api/v3/{quote(self.model, safe='/')}",
                params={"webhook": callback_url} if callback_url else None,
                json=body,
                headers={"Content-Type": "application/json"},
            )
        except ProviderError as exc:
            # A gateway timeout: the API behind it may still create the prediction
            # (docs/providers.md §2.5 documents exactly this for sync mode).
            exc.ambiguous = exc.ambiguous or exc.status_code == 504
            raise
        self.expect_status(response, SUBMIT_OK)
        try:
            return self._task(self._data(response), status_code=response.status_code)
        except ProviderError as exc:
            # The submit was accepted (2xx) but its answer is unreadable: the prediction
            # probably exists and is billed, so submitting again could pay twice.
            exc.ambiguous = True
            raise

    # -- status --------------------------------------------------------------------------

    def fetch(self, task_id: str) -> ProviderTask:
        """``GET /api/v3/predictions/{id}/result`` (the path every model page uses)."""
        response = self.request(
            "GET", f"{self.base_url}/api/v3/predictions/{quote(task_id, safe='')}/result"
        )
        self.expect_status(response, frozenset({200}))
        task = self._task(self._data(response), status_code=response.status_code)
        if task.task_id != task_id:
            raise ProviderError(
                self.display_name,
                self.redact(
                    f"asked for prediction {task_id!r} but the answer is about "
                    f"{task.task_id[:100]!r}"
                ),
                status_code=response.status_code,
                unexpected=True,
            )
        return task

    def _envelope(self, response: httpx.Response) -> dict[str, Any]:
        """The JSON object of a 2xx answer, after checking the envelope's own ``code``."""
        payload = self.json(response)
        if not isinstance(payload, dict):
            raise ProviderError(
                self.display_name,
                "answered with JSON that is not an object",
                status_code=response.status_code,
                unexpected=True,
            )
        code = payload.get("code")
        if code is not None and str(code) != "200":
            status = _int_or_none(code)
            message = payload.get("message") or payload.get("error") or "error"
            raise ProviderError(
                self.display_name,
                self.redact(str(message)[:300]),
                status_code=response.status_code,
                code=str(code)[:100],
                retryable=status is not None and (status == 429 or status >= 500),
            )
        return payload

    def _data(self, response: httpx.Response) -> dict[str, Any]:
        data = self._envelope(response).get("data")
        if not isinstance(data, dict):
            raise ProviderError(
                self.display_name,
                "answer has no 'data' object",
                status_code=response.status_code,
                unexpected=True,
            )
        return data

    def _task(self, data: Mapping[str, Any], *, status_code: int | None) -> ProviderTask:
        """The one reading of a prediction object: submit, result and webhook bodies."""
        task_id = data.get("id")
        if not isinstance(task_id, str) or not task_id:
            raise ProviderError(
                self.display_name,
                "prediction has no 'id' string",
                status_code=status_code,
                unexpected=True,
            )
        raw_status = data.get("status")
        if not isinstance(raw_status, str) or raw_status not in STATUSES:
            raise ProviderError(
                self.display_name,
                self.redact(
                    f"prediction {task_id[:100]} has an unknown status {repr(raw_status)[:100]}"
                ),
                status_code=status_code,
                unexpected=True,
            )
        status = STATUSES[raw_status]
        error_code = error_message = ""
        # A sync-mode timeout is {"status": "processing", "code": 5004, "error": "..."}
        # (docs/providers.md §2.5): the task is still running, so errors count only once it
        # has ended badly.
        if status in (TaskStatus.FAILED, TaskStatus.CANCELLED):
            code = data.get("code")
            if code not in (None, "", 0, "0"):
                error_code = str(code)[:100]
            error = data.get("error")
            error_message = error if isinstance(error, str) and error else ""
            error_message = error_message or _DEFAULT_MESSAGES.get(raw_status, "")
        try:
            outputs = _outputs(data.get("outputs"), data.get("has_nsfw_contents"))
        except ValueError:
            # Reading past a bad entry would shift the others onto the wrong images, and
            # reading none would mark a finished task's images withheld (W7, P6).
            raise ProviderError(
                self.display_name,
                f"prediction {task_id} has malformed 'outputs' (not a list of URLs)",
                status_code=status_code,
                unexpected=True,
            ) from None
        return ProviderTask(
            task_id=task_id,
            status=status,
            progress=None,  # WaveSpeed reports no progress
            outputs=outputs,
            error_code=error_code,
            error_message=self.redact(error_message[:1000]),
            cost=None,  # WaveSpeed does not report the charge per prediction
            raw=data,
        )

    # -- errors --------------------------------------------------------------------------

    def parse_error_body(self, response: httpx.Response) -> tuple[str, str]:
        """Envelope ``{code, message, data}``, ``{"error": "..."}`` or ``{message, error_code}``."""
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return "", self.redact(response.text[:300])
        message = data.get("message")
        error = data.get("error")
        if isinstance(error, dict):  # not documented; read it rather than print a dict
            error = error.get("message")
        if not (isinstance(message, str) and message) or message == "success":
            message = error if isinstance(error, str) else ""
        elif isinstance(error, str) and error and error != message:
            message = f"{message}: {error}"
        code = data.get("error_code")
        if code in (None, ""):
            code = data.get("code")
            # The envelope code usually repeats the HTTP status; only keep news.
            if _int_or_none(code) == response.status_code:
                code = None
        return (
            self.redact(str(code)[:100]) if code not in (None, "") else "",
            self.redact(str(message)[:300]),
        )

    # -- webhooks ------------------------------------------------------------------------

    def prepare_webhooks(self) -> None:
        """Fetch (and cache) the webhook secret before asking for a webhook, so the view
        finds it ready."""
        self.webhook_secrets()

    def webhook_secrets(self) -> list[str]:
        """Every secret a webhook may be signed with (several while rotating).

        From ``OPTIONS["WEBHOOK_SECRET"]`` if set; otherwise fetched once with
        ``GET /api/v3/webhook/secret`` and kept in the default cache for 24 hours, under a
        key made of the alias and a hash of the API key. Raises :class:`ProviderError`
        when the secret cannot be fetched.
        """
        secrets = self._configured_secrets()
        if secrets:
            return secrets
        key = self._secret_cache_key()
        cached = cache.get(key)
        if isinstance(cached, str) and cached:
            return [cached]
        secret = self._fetch_webhook_secret()
        cache.set(key, secret, SECRET_CACHE_SECONDS)
        return [secret]

    def _configured_secrets(self) -> list[str]:
        configured = self.options.get("WEBHOOK_SECRET")
        values = [configured] if isinstance(configured, str) else list(configured or [])
        return [value.strip() for value in values if value.strip()]

    def _refreshed_secret(self) -> str | None:
        """The secret fetched again, when it was fetched (not configured) and has not been
        refreshed in the last :data:`SECRET_REFRESH_SECONDS`; else ``None``.

        For a secret rotated on the account after it was cached: without this, every
        webhook would be refused until the cached copy expired a day later.
        """
        key = self._secret_cache_key()
        if self._configured_secrets() or not cache.add(
            f"{key}:refreshed", True, SECRET_REFRESH_SECONDS
        ):
            return None
        secret = self._fetch_webhook_secret()
        cache.set(key, secret, SECRET_CACHE_SECONDS)
        return secret

    def _secret_cache_key(self) -> str:
        api_key = str(self.options.get("API_KEY") or "")
        digest = hashlib.sha256(api_key.encode()).hexdigest()[:16]
        return f"imagen_assets:wavespeed-webhook-secret:{self.alias}:{digest}"

    def _fetch_webhook_secret(self) -> str:
        response = self.request("GET", f"{self.base_url}/api/v3/webhook/secret")
        payload = self._envelope(response)
        data = payload.get("data")
        # Assumption (docs/providers.md §2.7): integrators see {"code":200,"data":{"secret":..}};
        # a bare {"secret": ...} is accepted too.
        secret = data.get("secret") if isinstance(data, dict) else payload.get("secret")
        if not isinstance(secret, str) or not secret.strip():
            raise ProviderError(
                self.display_name,
                "the answer to GET /api/v3/webhook/secret holds no secret",
                status_code=response.status_code,
            )
        return secret.strip()

    def verify_webhook(
        self, headers: Mapping[str, str], body: bytes, *, now: float | None = None
    ) -> None:
        """Check the ``v3`` HMAC signature exactly as docs/providers.md §2.7 describes.

        Signed content is ``"{webhook-id}.{webhook-timestamp}."`` followed by the raw body;
        the key is the secret without its ``whsec_`` prefix, as UTF-8 (not base64-decoded);
        the signature is the lowercase hex HMAC-SHA256 in a ``v3,<hex>`` entry of
        ``webhook-signature`` (several entries may be space-separated). Raises
        :class:`WebhookError` 400 for missing or malformed headers, 401 for a stale
        timestamp or a signature no configured secret produces, and :class:`ProviderError`
        when the secret has to be fetched and cannot be.
        """
        webhook_id = _header(headers, "webhook-id")
        timestamp = _header(headers, "webhook-timestamp")
        signature = _header(headers, "webhook-signature")
        if not _TIMESTAMP.fullmatch(timestamp):
            raise WebhookError("webhook-timestamp is not an integer", 400)
        tolerance = float(conf.get("WEBHOOK_TOLERANCE"))
        if abs((time.time() if now is None else now) - int(timestamp)) > tolerance:
            raise WebhookError("timestamp outside the tolerance window", 401)
        if len(signature) > MAX_SIGNATURE_HEADER:
            raise WebhookError("webhook-signature header is too long", 400)
        try:
            signed = f"{webhook_id}.{timestamp}.".encode() + body
        except UnicodeEncodeError:
            raise WebhookError("webhook-id is not valid text", 400) from None
        candidates = []
        for entry in signature.split():
            version, comma, value = entry.partition(",")
            if version != "v3" or not comma or not value:
                continue  # another scheme's entry: not ours to judge
            try:
                candidates.append(value.encode("ascii"))
            except UnicodeEncodeError:
                continue
        if not candidates:
            raise WebhookError("webhook-signature holds no v3 signature", 401)
        known = self.webhook_secrets()
        if _signed_by(known, signed, candidates):
            return
        fresh = self._refreshed_secret()
        if fresh is not None and fresh not in known and _signed_by([fresh], signed, candidates):
            logger.info("WaveSpeed webhook secret for %r changed; using the new one", self.alias)
            return
        raise WebhookError("signature does not match", 401)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookNotice:
        """The signed body is the bare prediction, so ``task`` is authoritative.

        ``event_id`` is the ``webhook-id`` header. Raises :class:`WebhookError` (400) for a
        body that is not a prediction object.
        """
        event_id = _header(headers, "webhook-id")
        try:
            data = storable(json.loads(body.decode("utf-8")))
        except (UnicodeDecodeError, ValueError):
            raise WebhookError("webhook body is not UTF-8 JSON", 400) from None
        if not isinstance(data, dict):
            raise WebhookError("webhook body is not a JSON object", 400)
        payload = data
        if "id" not in data and isinstance(data.get("data"), dict):
            # Documented as bare; tolerate the API's envelope should a sender wrap it.
            data = data["data"]
        if not isinstance(data.get("id"), str) or not isinstance(data.get("status"), str):
            raise WebhookError("webhook body has no 'id' and 'status' strings", 400)
        try:
            task = self._task(data, status_code=None)
        except ProviderError as exc:
            raise WebhookError(exc.message, 400) from None
        return WebhookNotice(event_id=event_id, task_id=task.task_id, task=task, payload=payload)


def _signed_by(secrets: list[str], signed: bytes, candidates: list[bytes]) -> bool:
    """Whether any of ``candidates`` is the v3 signature of ``signed`` under a secret."""
    for secret in secrets:
        key = secret.removeprefix("whsec_").encode()
        expected = hmac.new(key, signed, hashlib.sha256).hexdigest().encode("ascii")
        if any(hmac.compare_digest(expected, candidate) for candidate in candidates):
            return True
    return False


def _header(headers: Mapping[str, str], name: str) -> str:
    """A header by case-insensitive name; missing or empty is a 400."""
    for key, value in headers.items():
        if key.lower() == name and isinstance(value, str) and value.strip():
            return value.strip()
    raise WebhookError(f"missing {name} header", 400)


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _outputs(outputs: Any, nsfw: Any) -> tuple[Output, ...]:
    """Output URLs paired with ``has_nsfw_contents`` (a missing or short list means False).

    Missing or null ``outputs`` is none yet; anything but a list of non-empty strings is
    :class:`ValueError`.
    """
    if outputs is None:
        return ()
    if not isinstance(outputs, list) or not all(isinstance(url, str) and url for url in outputs):
        raise ValueError("outputs is not a list of URLs")
    flags = nsfw if isinstance(nsfw, list) else []
    return tuple(
        Output(url=url, nsfw=index < len(flags) and flags[index] is True)
        for index, url in enumerate(outputs)
    )
