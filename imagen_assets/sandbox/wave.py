"""The Wave (qingbo.dev) task API for ``imagen-4.0``, as docs/providers.md section 1 documents it.

Endpoints: ``POST /v1/tasks`` (with ``Idempotency-Key`` and ``Prefer: wait=N``),
``GET /v1/tasks/{task_id}``, ``POST /v1/tasks/{task_id}/cancel``, plus the callback POSTed
to ``callback_url`` when a task becomes terminal.

Where Wave's docs are silent the sandbox assumes (and a client must not rely on more):

* ``n`` is capped at 4, Google's per-request limit (section 3); Wave documents no maximum.
* With ``n > 1`` the result has one item per image, each with a one-element ``url`` list.
* Missing or malformed values answer ``400`` with code ``invalid_request`` (Wave documents
  no code for this); unsupported ones use the documented ``capability_violation`` + ``param``.
* The callback is unsigned and its body is exactly the terminal ``GET`` object (section 1.6).
* ``progress`` of a cancelled task is ``0`` (int style) or ``""`` (percent style).
* The timestamp knob (ms/s) applies to ``expires_at`` as well; results expire 24 h after
  completion (the Imagen page's "URL valid for 24 hours").
* A task whose only image was filtered completes with an empty ``images`` list and cost 0.
"""

from __future__ import annotations

import json
import secrets
import string
import threading
import time
from dataclasses import dataclass
from typing import Any

from imagen_assets.imagen_sizes import ASPECT_RATIOS

from .callbacks import CallbackDispatcher, Delivery
from .config import SandboxConfig
from .engine import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PROCESSING,
    QUEUED,
    CancelResult,
    CapacityError,
    Task,
    TaskEngine,
)
from .http_types import Request, Response, json_response
from .images import image_specs
from .stats import Counters

API = "wave"
MODEL = "imagen-4.0"
API_LABEL = "Wave protocol · imagen-4.0"
# $0.0425 per image at 500 000 quota per USD (docs/providers.md section 1.2).
COST_PER_IMAGE = 21250
# Assumption: Google's Imagen 4 limit of 4 images per request (docs/providers.md section 3);
# Wave itself documents no maximum for ``n``.
MAX_IMAGES = 4
RESULT_LIFETIME_SECONDS = 24 * 3600
MAX_PREFER_WAIT = 60
ALLOWED_FIELDS = frozenset(
    {
        "model",
        "action",
        "prompt",
        "n",
        "seed",
        "aspect_ratio",
        "resolution",
        "callback_url",
        "callback_events",
        "extra",
    }
)
# ``succeeded`` is a legacy alias seen in archived docs (docs/providers.md section 1.6).
CALLBACK_EVENTS = {
    "completed": COMPLETED,
    "failed": FAILED,
    "cancelled": CANCELLED,
    "succeeded": COMPLETED,
}
FAILURE_CODE = "upstream_bad_request"
FAILURE_MESSAGE = "[upstream_bad_request] Upstream returned: invalid prompt"


class WaveError(Exception):
    """A request Wave would reject; carries what goes into the error envelope."""

    def __init__(self, status: int, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param

    def response(self) -> Response:
        return error_response(self.status, self.code, self.message, self.param)


def error_response(
    status: int,
    code: str,
    message: str,
    param: str | None = None,
    extra: dict[str, Any] | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> Response:
    """Wave's task-endpoint error envelope ``{"error": {"message", "code"[, "param"]}}``."""
    error: dict[str, Any] = {"message": message, "code": code}
    if param is not None:
        error["param"] = param
    return json_response(status, {"error": error, **(extra or {})}, headers)


@dataclass(frozen=True)
class WaveRequest:
    """A validated submit (the task's ``payload``)."""

    action: str
    n: int
    seed: int
    aspect_ratio: str
    callback_url: str | None
    callback_events: frozenset[str]
    base_url: str


def _invalid(message: str, param: str) -> WaveError:
    return WaveError(400, "invalid_request", message, param)


def _unsupported(message: str, param: str) -> WaveError:
    return WaveError(400, "capability_violation", message, param)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_submit(body: Any, base_url: str) -> tuple[str, WaveRequest]:
    """Validate a ``POST /v1/tasks`` body; return ``(prompt, request)`` or raise WaveError.

    ``seed`` is returned as sent (-1 = random is resolved by the caller).
    """
    if not isinstance(body, dict):
        raise WaveError(400, "invalid_request", "request body must be a JSON object")
    model = body.get("model")
    if model is None:
        raise _invalid("model is required", "model")
    if model != MODEL:
        raise WaveError(400, "model_not_found", f"model {model!r} does not exist", "model")
    for name in body:
        if name not in ALLOWED_FIELDS:
            raise _unsupported(f"parameter {name!r} is not supported by {MODEL}", name)
    action = body.get("action", "generate")
    if action != "generate":
        raise _unsupported(f"{MODEL} supports only action 'generate'", "action")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise _invalid("prompt is required and must be a non-empty string", "prompt")
    n = body.get("n", 1)
    if not _is_int(n) or n < 1:
        raise _invalid("n must be an integer >= 1", "n")
    if n > MAX_IMAGES:
        raise _unsupported(f"n must be at most {MAX_IMAGES} for {MODEL}", "n")
    seed = body.get("seed", -1)
    if not _is_int(seed):
        raise _invalid("seed must be an integer (-1 for random)", "seed")
    aspect_ratio = body.get("aspect_ratio", "1:1")
    if aspect_ratio not in ASPECT_RATIOS:
        raise WaveError(
            400,
            "invalid_aspect_ratio",
            f"aspect_ratio must be one of {', '.join(ASPECT_RATIOS)}",
            "aspect_ratio",
        )
    if body.get("resolution") not in (None, ""):
        raise _unsupported(f"{MODEL} is native 2K; leave resolution empty", "resolution")
    callback_url = body.get("callback_url")
    if callback_url is not None and (
        not isinstance(callback_url, str) or not callback_url.startswith(("http://", "https://"))
    ):
        raise _invalid("callback_url must be an http(s) URL", "callback_url")
    events_value = body.get("callback_events")
    if events_value is None:
        events = frozenset({COMPLETED, FAILED, CANCELLED})
    else:
        if not isinstance(events_value, list) or not all(
            isinstance(e, str) and e in CALLBACK_EVENTS for e in events_value
        ):
            raise _invalid(
                "callback_events must be a list of: completed, failed, cancelled",
                "callback_events",
            )
        events = frozenset(CALLBACK_EVENTS[e] for e in events_value)
    extra = body.get("extra")
    if extra not in (None, {}):
        # Newest docs: ``extra`` is deprecated and any non-empty value is rejected.
        raise _unsupported("extra is no longer supported", "extra")
    request = WaveRequest(
        action=action,
        n=n,
        seed=seed,
        aspect_ratio=aspect_ratio,
        callback_url=callback_url or None,
        callback_events=events,
        base_url=base_url,
    )
    return prompt, request


def _prefer_wait(header: str | None) -> float | None:
    """Seconds asked for by ``Prefer: wait=N`` (capped at 60), or None."""
    if not header:
        return None
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "wait":
            try:
                return max(0.0, min(float(value.strip()), MAX_PREFER_WAIT))
            except ValueError:
                return None
    return None


class WaveAPI:
    """Request handlers for the Wave endpoints; one instance per server."""

    def __init__(
        self,
        config: SandboxConfig,
        engine: TaskEngine,
        stats: Counters,
        callbacks: CallbackDispatcher,
    ) -> None:
        self._config = config
        self._engine = engine
        self._stats = stats
        self._callbacks = callbacks
        self._idempotency_lock = threading.Lock()
        self._idempotency: dict[tuple[str, str], str] = {}

    # --- errors the server's gate answers with ------------------------------------------

    def unauthorized(self) -> Response:
        return error_response(401, "invalid_api_key", "Invalid or missing API key")

    def rate_limited(self) -> Response:
        reset_at = self._timestamp(time.time() + 1)
        return error_response(
            429,
            "quota_window_exceeded",
            "Rate limit exceeded for the current window; retry after reset_at",
            extra={"window": "60s", "used": 60, "cap": 60, "reset_at": reset_at},
            headers=(("Retry-After", "1"),),
        )

    def over_capacity(self, error: CapacityError) -> Response:
        """The account's concurrency is used up (``--over-capacity reject``): Wave's
        documented 429 shape, its window the tasks in progress."""
        return error_response(
            429,
            "quota_window_exceeded",
            "Too many tasks in progress; retry after reset_at",
            extra={
                "window": "concurrent",
                "used": error.in_progress,
                "cap": error.cap,
                "reset_at": self._timestamp(time.time() + 1),
            },
            headers=(("Retry-After", "1"),),
        )

    def server_error(self) -> Response:
        return error_response(500, "internal_error", "internal error")

    def unavailable(self) -> Response:
        return error_response(503, "service_unavailable", "service unavailable")

    def not_found(self) -> Response:
        return error_response(404, "task_not_found", "task not found")

    # --- endpoints ----------------------------------------------------------------------

    def submit(self, request: Request) -> Response:
        """``POST /v1/tasks``: create a task (or replay one by ``Idempotency-Key``)."""
        try:
            body = request.json()
        except ValueError:
            return error_response(400, "invalid_request", "request body is not valid JSON")
        try:
            task, replayed = self._create_or_replay(body, request)
        except WaveError as error:
            return error.response()
        if replayed:
            self._stats.incr("wave_idempotent_replays")
        wait = _prefer_wait(request.header("Prefer"))
        if wait is None:
            return json_response(200, self._submit_body(task))
        # ``Prefer: wait=N``: the full terminal object if done in time, else the current
        # state plus the pre-deducted cost (docs/providers.md section 1.1).
        task = self._engine.wait_settled(API, task.id, wait) or task
        payload = self.status_object(task)
        if not task.terminal:
            payload["pre_consumed_cost"] = self._pre_consumed(task)
        return json_response(200, payload)

    def status(self, request: Request, task_id: str) -> Response:
        """``GET /v1/tasks/{task_id}``."""
        self._stats.incr("wave_polls")
        task = self._engine.get(API, task_id)
        if task is None:
            return self.not_found()
        return json_response(200, self.status_object(task))

    def cancel(self, request: Request, task_id: str) -> Response:
        """``POST /v1/tasks/{task_id}/cancel``: only a ``queued`` task can be cancelled."""
        result, task = self._engine.cancel(API, task_id)
        if task is None:
            return self.not_found()
        if result != CancelResult.CANCELLED:
            return error_response(
                400, "task_not_cancellable", f"task is {task.status} and cannot be cancelled"
            )
        self._stats.incr("wave_cancels")
        return json_response(
            200,
            {
                "task_id": task.id,
                "status": CANCELLED,
                "refunded": True,
                "refunded_quota": self._pre_consumed(task),
            },
        )

    def on_terminal(self, task: Task) -> None:
        """Engine hook: POST the terminal status object to ``callback_url`` if asked for."""
        payload: WaveRequest = task.payload
        if payload.callback_url is None or task.status not in payload.callback_events:
            return
        body = json.dumps(self.status_object(task), ensure_ascii=False).encode("utf-8")
        terminal = Delivery(url=payload.callback_url, body=body)
        # Wave callbacks only exist for terminal events, so "out of order" means the same
        # callback arriving again later.
        self._callbacks.dispatch(terminal, late=terminal)

    # --- shapes -------------------------------------------------------------------------

    def status_object(self, task: Task) -> dict[str, Any]:
        """The ``GET /v1/tasks/{id}`` object (also the callback body)."""
        payload: WaveRequest = task.payload
        base = f"{payload.base_url}/v1/tasks/{task.id}"
        data: dict[str, Any] = {
            "task_id": task.id,
            "status": task.status,
            "action": payload.action,
            "model": MODEL,
            "progress": self._progress(task),
            "created_at": self._timestamp(task.created_wall),
        }
        if task.terminal and task.finished_wall is not None:
            data["completed_at"] = self._timestamp(task.finished_wall)
            data["cost"] = COST_PER_IMAGE * len(task.image_files) if task.status == COMPLETED else 0
        if task.status == FAILED:
            data["error"] = {"message": FAILURE_MESSAGE, "code": FAILURE_CODE}
        if task.status == COMPLETED and task.finished_wall is not None:
            expires_at = self._timestamp(task.finished_wall + RESULT_LIFETIME_SECONDS)
            as_list = self._config.wave_url_style == "list"
            images = []
            for name in task.image_files:
                url = f"{payload.base_url}/files/{name}"
                images.append({"url": [url] if as_list else url, "expires_at": expires_at})
            data["result"] = {"images": images}
        data["urls"] = {"get": base, "cancel": f"{base}/cancel"}
        return data

    # --- internals ----------------------------------------------------------------------

    def _create_or_replay(self, body: Any, request: Request) -> tuple[Task, bool]:
        """A new task, or the one created earlier with this ``Idempotency-Key``
        (``True`` second element)."""
        key = request.header("Idempotency-Key")
        if not key:
            return self._create(body, request.base_url), False
        # Keys are scoped per API key, like any per-account resource; the lock makes two
        # concurrent requests with one key create exactly one task.
        scope = (request.bearer_token() or "", key)
        with self._idempotency_lock:
            existing = self._idempotency.get(scope)
            if existing is None:
                task = self._create(body, request.base_url)
                self._idempotency[scope] = task.id
                return task, False
        replayed = self._engine.get(API, existing)
        assert replayed is not None  # the engine never forgets a task
        return replayed, True

    def _create(self, body: Any, base_url: str) -> Task:
        prompt, parsed = parse_submit(body, base_url)
        seed = parsed.seed if parsed.seed >= 0 else self._engine.random_seed()
        specs = image_specs(
            api_label=API_LABEL,
            aspect_ratio=parsed.aspect_ratio,
            resolution="2k",  # Wave: "native 2K, fixed"
            seed=seed,
            prompt=prompt,
            count=parsed.n,
            fmt=self._config.image_format,
        )
        task = Task(
            id=self._new_task_id(), api=API, prompt=prompt, image_specs=specs, payload=parsed
        )
        snapshot = self._engine.submit(task)
        self._stats.incr("wave_submits")
        return snapshot

    def _new_task_id(self) -> str:
        # The current format: task-wave<10-digit unix seconds><letter><9 digits>.
        while True:
            letter = secrets.choice(string.ascii_lowercase)
            digits = "".join(secrets.choice(string.digits) for _ in range(9))
            task_id = f"task-wave{int(time.time())}{letter}{digits}"
            if not self._engine.exists(API, task_id):
                return task_id

    def _submit_body(self, task: Task) -> dict[str, Any]:
        return {
            "task_id": task.id,
            "model": MODEL,
            "action": task.payload.action,
            "status": task.status,
            "created_at": self._timestamp(task.created_wall),
            # Every doc generation shows an int 0 here, even the one with "NN%" elsewhere.
            "progress": 0 if task.status == QUEUED else self._progress(task),
            "pre_consumed_cost": self._pre_consumed(task),
        }

    @staticmethod
    def _pre_consumed(task: Task) -> int:
        return COST_PER_IMAGE * task.requested

    def _timestamp(self, wall: float) -> int:
        return int(wall * 1000) if self._config.wave_timestamps == "ms" else int(wall)

    def _progress(self, task: Task) -> int | str:
        percent = self._config.wave_progress_style == "percent"
        if task.status == PROCESSING:
            value = min(99, int(task.progress * 100))
            return f"{value}%" if percent else value
        if task.status == COMPLETED:
            return "100%" if percent else 100
        if task.status == FAILED:
            # Older docs: 0 for failed; newest docs: "100%" for completed and failed.
            return "100%" if percent else 0
        return "" if percent else 0  # queued, cancelled
