"""Wave (qingbo.dev) task API, model ``imagen-4.0``.

Wire format: docs/providers.md section 1 and the seed page ``docs/seeds/wave-task-api.md``.
One ``POST /v1/tasks`` starts a task, ``GET /v1/tasks/{task_id}`` reads it back. Wave's
docs exist in several generations that disagree on small things (progress as int or
``"NN%"``, timestamps in seconds or milliseconds, ``url`` as string or list); this module
accepts all of them.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from imagen_assets.imagen_sizes import SIZES_2K
from imagen_assets.providers.base import SUBMIT_OK, Provider, WebhookAuth
from imagen_assets.providers.errors import ProviderError, WebhookError
from imagen_assets.providers.http import storable
from imagen_assets.providers.types import GenerationParams, Output, ProviderTask, WebhookNotice
from imagen_assets.status import TaskStatus

# docs/providers.md §1.4 states; ``succeeded`` is the legacy name of ``completed`` (§1.6).
STATUSES: Mapping[str, TaskStatus] = {
    "queued": TaskStatus.SUBMITTED,
    "processing": TaskStatus.PROCESSING,
    "completed": TaskStatus.SUCCEEDED,
    "succeeded": TaskStatus.SUCCEEDED,
    "failed": TaskStatus.FAILED,
    "cancelled": TaskStatus.CANCELLED,
}

# Assumption (docs/providers.md §1.6): the event names are undocumented; these are the three
# terminal statuses, which is also what the default ("all terminal events") means.
CALLBACK_EVENTS = ("completed", "failed", "cancelled")

# docs/providers.md §1.2: the billing unit is "quota"; cost / 500000 = USD (derived from the
# official skill, not from the API reference).
QUOTA_PER_USD = Decimal(500_000)

# Timestamps above this are milliseconds (docs/providers.md §1.0).
_MS_THRESHOLD = 10**11


class WaveProvider(Provider):
    """Wave's ``imagen-4.0`` through the generic task API.

    Submits carry an ``Idempotency-Key``, so a submit retried with the same key and body
    returns the task created the first time instead of a second one (docs/providers.md §1.1).
    Callbacks are unsigned: the callback URL must carry an unguessable per-task token, and
    a callback is only a hint to re-read the task.
    """

    display_name = "Wave"
    default_options: ClassVar[Mapping[str, Any]] = {
        "BASE_URL": "https://www.qingbo.dev",
        "MODEL": "imagen-4.0",
        "PRICE_PER_IMAGE": "0.0425",
    }
    webhook_auth = WebhookAuth.URL_TOKEN
    # UNCONFIRMED (docs/providers.md §1): the docs' example result is on cdn.qingbo.dev; the
    # API is on www.qingbo.dev or api.qingbo.ai. The vendor's two domains, subdomains too.
    result_hosts_default: ClassVar[tuple[str, ...]] = (".qingbo.dev", ".qingbo.ai")
    idempotent_submit = True  # Idempotency-Key: same key within 24 h = same task, billed once
    # imagen-4.0 has no negative prompt, and Wave rejects unknown root parameters.
    supports_negative_prompt = False
    supports_cancel = True  # POST /v1/tasks/{id}/cancel, queued tasks only (§1.5)
    api_path = "/v1"

    def output_size(self, aspect_ratio: str) -> tuple[int, int]:
        # Assumption (docs/providers.md §1.2, §3): "native 2K" means Google's 2K table.
        return SIZES_2K[aspect_ratio]

    # -- submit --------------------------------------------------------------------------

    def request_body(self, params: GenerationParams, *, callback_url: str | None) -> dict[str, Any]:
        """The seed's body; ``resolution`` is left out ("native 2K, leave empty").

        Raises ``ValueError`` for parameters the service layer should have refused.
        """
        # Assumption (docs/providers.md §1.2): Wave documents no maximum for n; Google's cap of
        # 4 (max_images_per_task) applies.
        self.check_params(params)
        body: dict[str, Any] = {
            "model": self.model,
            "action": "generate",
            "prompt": params.prompt,
            "n": params.num_images,
            "seed": -1 if params.seed is None else params.seed,
            "aspect_ratio": params.aspect_ratio,
        }
        if callback_url:
            body["callback_url"] = callback_url
            body["callback_events"] = list(CALLBACK_EVENTS)
        return body

    def submit(
        self,
        params: GenerationParams,
        *,
        idempotency_key: str,
        callback_url: str | None = None,
    ) -> ProviderTask:
        """``POST /v1/tasks``. Safe to retry with the same ``idempotency_key`` and params."""
        if not idempotency_key:
            raise ValueError("Wave: an idempotency key is required to submit safely.")
        body = self.request_body(params, callback_url=callback_url)
        response = self.request(
            "POST",
            f"{self.base_url}/v1/tasks",
            json=body,
            headers={"Content-Type": "application/json", "Idempotency-Key": idempotency_key},
        )
        self.expect_status(response, SUBMIT_OK)
        return self._task(self.json(response), status_code=response.status_code)

    # -- status --------------------------------------------------------------------------

    def fetch(self, task_id: str) -> ProviderTask:
        """``GET /v1/tasks/{task_id}``."""
        response = self.request("GET", f"{self.base_url}/v1/tasks/{quote(task_id, safe='')}")
        self.expect_status(response, frozenset({200}))
        task = self._task(self.json(response), task_id=task_id, status_code=response.status_code)
        if task.task_id != task_id:
            raise ProviderError(
                self.display_name,
                self.redact(
                    f"asked for task {task_id!r} but the answer is about {task.task_id[:100]!r}"
                ),
                status_code=response.status_code,
                unexpected=True,
            )
        return task

    # -- cancel --------------------------------------------------------------------------

    def cancel(self, task_id: str) -> bool:
        """``POST /v1/tasks/{task_id}/cancel`` (docs/providers.md §1.5): only a ``queued``
        task is cancelled (and refunded); one already ``processing`` answers 400
        ``task_not_cancellable`` (False: Wave finishes and bills it)."""
        try:
            response = self.request(
                "POST", f"{self.base_url}/v1/tasks/{quote(task_id, safe='')}/cancel"
            )
        except ProviderError as exc:
            if exc.status_code == 400 and exc.code == "task_not_cancellable":
                return False
            raise
        self.expect_status(response, frozenset({200}))
        data = self.json(response)
        if not isinstance(data, dict) or data.get("status") != "cancelled":
            raise ProviderError(
                self.display_name,
                self.redact(f"cancel of task {task_id[:100]} answered {str(data)[:200]}"),
                status_code=response.status_code,
                unexpected=True,
            )
        return True

    def _task(self, data: Any, *, status_code: int, task_id: str = "") -> ProviderTask:
        """Read a task object (submit answer, status answer) into a :class:`ProviderTask`."""
        if not isinstance(data, dict):
            raise ProviderError(
                self.display_name,
                "answered with JSON that is not an object",
                status_code=status_code,
                unexpected=True,
            )
        task_id = data.get("task_id", task_id)
        if not isinstance(task_id, str) or not task_id:
            raise ProviderError(
                self.display_name,
                "answer has no task_id",
                status_code=status_code,
                unexpected=True,
            )
        raw_status = data.get("status")
        if not isinstance(raw_status, str) or raw_status not in STATUSES:
            raise ProviderError(
                self.display_name,
                self.redact(f"task {task_id[:100]} has an unknown status {repr(raw_status)[:100]}"),
                status_code=status_code,
                unexpected=True,
            )
        status = STATUSES[raw_status]
        error_code = error_message = ""
        if status is TaskStatus.FAILED:
            error_code, error_message = _error_fields(data.get("error"))
        return ProviderTask(
            task_id=task_id,
            status=status,
            progress=_progress(data.get("progress")),
            outputs=_outputs(data.get("result")),
            error_code=self.redact(error_code),
            error_message=self.redact(error_message),
            cost=_cost(data.get("cost")) if status.terminal else None,
            raw=data,
        )

    # -- errors --------------------------------------------------------------------------

    def parse_error_body(self, response: httpx.Response) -> tuple[str, str]:
        """``{"error": {"message", "code", "param"?}}`` (docs/providers.md §1.7)."""
        data = _json_or_none(response)
        if not isinstance(data, dict):
            return "", self.redact(response.text[:300])
        code, message = _error_fields(data.get("error"))
        if not message and isinstance(data.get("message"), str):
            message = data["message"]
        error = data.get("error")
        param = error.get("param") if isinstance(error, dict) else None
        if param:
            message = f"{message} (param: {param})"
        return self.redact(code[:100]), self.redact(message[:300])

    def error_from_response(self, response: httpx.Response) -> ProviderError:
        """As the base, plus a 429 without ``Retry-After`` waits until the body's ``reset_at``."""
        error = super().error_from_response(response)
        if response.status_code == 429 and error.retry_after is None:
            error.retry_after = _reset_after(_json_or_none(response))
        return error

    # -- callbacks -----------------------------------------------------------------------

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> None:
        """Accept any JSON object: Wave callbacks are not signed (docs/providers.md §1.6).

        Authenticity comes from the per-task token in the callback URL, which the view
        checks against the database before calling this; the body itself proves nothing.
        Raises :class:`WebhookError` (400) for a body that is not a UTF-8 JSON object.
        """
        _json_object(body)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookNotice:
        """A hint; ``task`` is ``None`` so the status is re-read with GET.

        The callback URL's token already names the task, so the body's ``task_id`` is only
        cross-checked when present. Assumption (docs/providers.md §1.6): the body is the terminal
        status object with ``task_id`` at the top; an older template nested it under
        ``data``; a body naming neither is still a valid hint (``task_id`` ""). Wave sends no
        event id: the hash of the body stands in, so a redelivered body is a duplicate.
        """
        data = _json_object(body)
        task_id = data.get("task_id")
        nested = data.get("data")
        if task_id is None and isinstance(nested, dict):
            task_id = nested.get("task_id")
        if task_id is not None and not isinstance(task_id, str):
            raise WebhookError("callback body has a task_id that is not a string", 400)
        return WebhookNotice(
            event_id=hashlib.sha256(body).hexdigest(),
            task_id=task_id or "",
            task=None,
            payload=data,
        )


# -- parsing helpers (module level: they know Wave's format, not the provider's options) --


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise WebhookError("callback body is not UTF-8", 400) from None
    except ValueError:
        raise WebhookError("callback body is not JSON", 400) from None
    if not isinstance(data, dict):
        raise WebhookError("callback body is not a JSON object", 400)
    safe: dict[str, Any] = storable(data)
    return safe


def _error_fields(error: Any) -> tuple[str, str]:
    """(code, message) from an ``error`` value: an object, or (older pages) a string."""
    if isinstance(error, dict):
        code, message = error.get("code"), error.get("message")
        return (
            str(code) if code not in (None, "") else "",
            str(message) if message not in (None, "") else "",
        )
    if isinstance(error, str):
        return "", error
    return "", ""


def _progress(value: Any) -> int | None:
    """0..100 from an int (older docs) or ``"NN%"`` (newest); ``""``/missing is unknown."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        value = value.strip().removesuffix("%").strip()
        if not value:
            return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number):
        return None
    return max(0, min(100, int(number)))


def _outputs(result: Any) -> tuple[Output, ...]:
    """Every image URL in ``result.images``, in order.

    ``url`` is a list in the current docs and a string in older ones; with ``n > 1`` the
    URLs may come as several items or as one item with several URLs (docs/providers.md §1.4,
    UNCONFIRMED), so all of them are flattened.
    """
    if not isinstance(result, dict) or not isinstance(result.get("images"), list):
        return ()
    urls: list[str] = []
    for item in result["images"]:
        url = item.get("url") if isinstance(item, dict) else item
        for one in url if isinstance(url, list) else [url]:
            if isinstance(one, str) and one:
                urls.append(one)
    return tuple(Output(url=url) for url in urls)


def _cost(value: Any) -> Decimal | None:
    """USD from the quota charged (``cost``), or ``None`` when not reported."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        quota = Decimal(str(value))
    except InvalidOperation:
        return None
    if not quota.is_finite() or quota < 0:
        return None
    return quota / QUOTA_PER_USD


def _unix_seconds(value: Any) -> float | None:
    """A Wave timestamp in seconds; above 10**11 it is milliseconds (docs/providers.md §1.0)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    if not math.isfinite(number):
        return None
    return number / 1000 if number > _MS_THRESHOLD else number


def _reset_after(data: Any, *, now: float | None = None) -> float | None:
    """Seconds until ``reset_at`` in a 429 body (top level or inside ``error``)."""
    if not isinstance(data, dict):
        return None
    reset_at = data.get("reset_at")
    if reset_at is None and isinstance(data.get("error"), dict):
        reset_at = data["error"].get("reset_at")
    when = _unix_seconds(reset_at)
    if when is None:
        return None
    return max(0.0, when - (time.time() if now is None else now))
