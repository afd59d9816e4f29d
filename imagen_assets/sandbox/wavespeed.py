"""The WaveSpeed AI v3 API for the Imagen 4 models, as docs/providers.md section 2 documents it.

Endpoints: ``POST /api/v3/{model-id}[?webhook=URL]``, ``GET /api/v3/predictions/{id}/result``
(and the same without ``/result``), ``GET /api/v3/webhook/secret``, plus the signed webhook
POSTed to ``?webhook=`` on ``completed`` or ``failed``.

Every JSON answer is wrapped in ``{"code", "message", "data"}``; webhook bodies are the
bare prediction plus ``input`` and ``executionTime``. Assumptions where the docs are silent:

* Unknown body fields (including ``webhook_url``, which one doc page lists) are rejected
  with 400, so a client bug shows up here rather than in production.
* ``wavespeed-ai/imagen4`` renders at 1K (docs/providers.md section 3 recommendation).
* The webhook URL may be plain ``http://`` (the real service wants public HTTPS).
* An unknown model id answers 404 with envelope code 404.
* Each delivery (a duplicate included) gets a fresh ``webhook-id``; retries of one delivery
  reuse it and are re-signed with a fresh ``webhook-timestamp``.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from imagen_assets.imagen_sizes import ASPECT_RATIOS

from .callbacks import CallbackDispatcher, Delivery
from .config import SandboxConfig
from .engine import COMPLETED, FAILED, PROCESSING, QUEUED, CapacityError, Task, TaskEngine
from .http_types import Request, Response, json_response
from .images import ImageStore, image_specs
from .signing import sign_wavespeed_webhook
from .stats import Counters

API = "wavespeed"
MAX_IMAGES = 4
MAX_SEED = 2_147_483_647
SYNC_TIMEOUT_CODE = 5004
FAILURE_MESSAGE = "Upstream returned: invalid prompt (sandbox-simulated failure)"
BASE64_WITH_WEBHOOK = (
    "webhook callback does not support base64 output, "
    "please use the normal API to use base64 output"
)
COMMON_FIELDS = frozenset(
    {
        "prompt",
        "negative_prompt",
        "aspect_ratio",
        "num_images",
        "seed",
        "enable_base64_output",
        "enable_sync_mode",
    }
)
# Our lifecycle names -> WaveSpeed's. (WaveSpeed has no cancel endpoint.)
STATUS_NAMES = {
    QUEUED: "created",
    PROCESSING: "processing",
    COMPLETED: "completed",
    FAILED: "failed",
}


@dataclass(frozen=True)
class ModelSpec:
    """What one model id accepts: ``resolutions`` empty means fixed 1K, no parameter."""

    resolutions: tuple[str, ...] = ()


MODELS: dict[str, ModelSpec] = {
    "wavespeed-ai/imagen4": ModelSpec(),
    "google/imagen4": ModelSpec(resolutions=("1k", "2k")),
    "google/imagen4-fast": ModelSpec(),
    "google/imagen4-ultra": ModelSpec(resolutions=("1k", "2k")),
}


class WaveSpeedError(Exception):
    """A request WaveSpeed would reject with the envelope ``{"code", "message", "data": null}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def response(self) -> Response:
        return error_response(self.status, self.message)


def error_response(
    status: int, message: str, headers: tuple[tuple[str, str], ...] = ()
) -> Response:
    return json_response(status, {"code": status, "message": message, "data": None}, headers)


def success(data: Any) -> Response:
    return json_response(200, {"code": 200, "message": "success", "data": data})


def iso_nanoseconds(ns: int) -> str:
    """``2025-09-25T09:12:48.239112031Z`` style UTC timestamp, as WaveSpeed sends."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}Z"


@dataclass(frozen=True)
class WaveSpeedRequest:
    """A validated submit (the task's ``payload``); ``input`` is the body as sent."""

    model: str
    input: Mapping[str, Any]
    aspect_ratio: str
    resolution: str
    num_images: int
    seed: int
    base64_output: bool
    sync: bool
    webhook: str | None
    base_url: str


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_submit(
    model: str, body: Any, webhook: str | None, base_url: str
) -> tuple[str, WaveSpeedRequest]:
    """Validate a submit for ``model``; return ``(prompt, request)`` or raise WaveSpeedError.

    ``seed`` is returned as sent (-1 = random is resolved by the caller).
    """
    spec = MODELS.get(model)
    if spec is None:
        raise WaveSpeedError(404, f"model not found: {model}")
    if not isinstance(body, dict):
        raise WaveSpeedError(400, "request body must be a JSON object")
    allowed = COMMON_FIELDS | ({"resolution"} if spec.resolutions else set())
    for name in body:
        if name == "resolution" and not spec.resolutions:
            raise WaveSpeedError(400, f"resolution is not supported by {model}")
        if name not in allowed:
            hint = (
                " (pass the webhook as the ?webhook= query parameter)" if "webhook" in name else ""
            )
            raise WaveSpeedError(400, f"unknown parameter: {name}{hint}")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise WaveSpeedError(400, "prompt is required and must be a non-empty string")
    negative = body.get("negative_prompt", "")
    if not isinstance(negative, str):
        raise WaveSpeedError(400, "negative_prompt must be a string")
    aspect_ratio = body.get("aspect_ratio", "1:1")
    if aspect_ratio not in ASPECT_RATIOS:
        raise WaveSpeedError(400, f"aspect_ratio must be one of {', '.join(ASPECT_RATIOS)}")
    num_images = body.get("num_images", 1)
    if not _is_int(num_images) or not 1 <= num_images <= MAX_IMAGES:
        raise WaveSpeedError(400, f"num_images must be an integer between 1 and {MAX_IMAGES}")
    seed = body.get("seed", -1)
    if not _is_int(seed) or not -1 <= seed <= MAX_SEED:
        raise WaveSpeedError(400, f"seed must be an integer between -1 and {MAX_SEED}")
    resolution = body.get("resolution", "1k")
    if spec.resolutions and resolution not in spec.resolutions:
        raise WaveSpeedError(400, f"resolution must be one of {', '.join(spec.resolutions)}")
    flags = {}
    for name in ("enable_base64_output", "enable_sync_mode"):
        value = body.get(name, False)
        if not isinstance(value, bool):
            raise WaveSpeedError(400, f"{name} must be a boolean")
        flags[name] = value
    if webhook is not None and not webhook.startswith(("http://", "https://")):
        raise WaveSpeedError(400, "webhook must be an http(s) URL")
    request = WaveSpeedRequest(
        model=model,
        input=dict(body),
        aspect_ratio=aspect_ratio,
        resolution=resolution if spec.resolutions else "1k",
        num_images=num_images,
        seed=seed,
        base64_output=flags["enable_base64_output"],
        sync=flags["enable_sync_mode"],
        webhook=webhook,
        base_url=base_url,
    )
    return prompt, request


class WaveSpeedAPI:
    """Request handlers for the WaveSpeed endpoints; one instance per server."""

    def __init__(
        self,
        config: SandboxConfig,
        engine: TaskEngine,
        images: ImageStore,
        stats: Counters,
        callbacks: CallbackDispatcher,
    ) -> None:
        self._config = config
        self._engine = engine
        self._images = images
        self._stats = stats
        self._callbacks = callbacks

    # --- errors the server's gate answers with ------------------------------------------

    def unauthorized(self) -> Response:
        return error_response(401, "invalid authentication")

    def rate_limited(self) -> Response:
        return error_response(429, "Too many requests", headers=(("Retry-After", "1"),))

    def over_capacity(self, error: CapacityError) -> Response:
        """The account's concurrency is used up (``--over-capacity reject``): the same 429
        envelope as a rate limit, naming the limit."""
        return error_response(
            429,
            f"Too many requests: {error.in_progress} tasks in progress, the concurrency "
            f"limit is {error.cap}",
            headers=(("Retry-After", "1"),),
        )

    def server_error(self) -> Response:
        return error_response(500, "internal error")

    def unavailable(self) -> Response:
        return error_response(503, "service unavailable")

    def not_found(self) -> Response:
        return error_response(404, "prediction not found")

    # --- endpoints ----------------------------------------------------------------------

    def submit(self, request: Request, model: str) -> Response:
        """``POST /api/v3/{model}``: create a prediction; with sync mode, wait for it."""
        webhook = request.query_param("webhook") or None
        try:
            body = request.json()
        except ValueError:
            return error_response(400, "request body is not valid JSON")
        if isinstance(body, dict) and body.get("enable_base64_output") is True and webhook:
            # The documented rejection has no envelope (docs/providers.md section 2.6).
            return json_response(400, {"error": BASE64_WITH_WEBHOOK})
        try:
            prompt, parsed = parse_submit(model, body, webhook, request.base_url)
        except WaveSpeedError as error:
            return error.response()
        task = self._create(prompt, parsed)
        if not parsed.sync:
            return success(self.prediction(task))
        timeout = float(self._config.sync_timeout)
        task = self._engine.wait_settled(API, task.id, timeout) or task
        data = self.prediction(task)
        if not task.terminal:
            self._stats.incr("wavespeed_sync_timeouts")
            data["code"] = SYNC_TIMEOUT_CODE
            data["error"] = (
                f"Sync mode timed out after {timeout:g} seconds. "
                "The prediction is still processing asynchronously."
            )
        return success(data)

    def result(self, request: Request, prediction_id: str) -> Response:
        """``GET /api/v3/predictions/{id}[/result]``: failed predictions are still 200."""
        self._stats.incr("wavespeed_polls")
        task = self._engine.get(API, prediction_id)
        if task is None:
            return self.not_found()
        return success(self.prediction(task))

    def secret(self, request: Request) -> Response:
        """``GET /api/v3/webhook/secret``."""
        return success({"secret": self._config.webhook_secret})

    def on_terminal(self, task: Task) -> None:
        """Engine hook: send the signed webhook if the submit carried ``?webhook=``."""
        payload: WaveSpeedRequest = task.payload
        if payload.webhook is None or task.status not in (COMPLETED, FAILED):
            return
        final = {
            **self.prediction(task),
            "input": dict(payload.input),
            "executionTime": task.execution_ms,
        }
        stale = {
            **self.prediction(task),
            "status": "processing",
            "outputs": [],
            "has_nsfw_contents": [],
            "error": "",
            "timings": {"inference": 0},
            "input": dict(payload.input),
            "executionTime": 0,
        }
        secret = self._config.webhook_secret

        def signed_headers(delivery_id: str, body: bytes) -> dict[str, str]:
            timestamp = int(time.time())
            return {
                "webhook-id": delivery_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign_wavespeed_webhook(secret, delivery_id, timestamp, body),
            }

        def delivery(data: dict[str, Any]) -> Delivery:
            body = json.dumps(data, ensure_ascii=False).encode("utf-8")
            return Delivery(url=payload.webhook or "", body=body, headers=signed_headers)

        self._callbacks.dispatch(delivery(final), late=delivery(stale))

    # --- shapes -------------------------------------------------------------------------

    def prediction(self, task: Task) -> dict[str, Any]:
        """The prediction object (``data`` of the envelope, or the webhook body's core)."""
        payload: WaveSpeedRequest = task.payload
        outputs: list[str] = []
        if task.status == COMPLETED:
            if payload.base64_output:
                outputs = [self._base64(name) for name in task.image_files]
            else:
                outputs = [f"{payload.base_url}/files/{name}" for name in task.image_files]
        return {
            "id": task.id,
            "model": payload.model,
            "outputs": outputs,
            "urls": {"get": f"{payload.base_url}/api/v3/predictions/{task.id}/result"},
            # Filtered images are simply missing, so every image that remains is clean.
            "has_nsfw_contents": [False] * len(outputs),
            "status": STATUS_NAMES.get(task.status, task.status),
            "created_at": iso_nanoseconds(task.created_ns),
            "error": FAILURE_MESSAGE if task.status == FAILED else "",
            "timings": {"inference": task.execution_ms if task.terminal else 0},
        }

    # --- internals ----------------------------------------------------------------------

    def _create(self, prompt: str, parsed: WaveSpeedRequest) -> Task:
        seed = parsed.seed if parsed.seed >= 0 else self._engine.random_seed()
        specs = image_specs(
            api_label=f"WaveSpeed AI protocol · {parsed.model}",
            aspect_ratio=parsed.aspect_ratio,
            resolution=parsed.resolution,
            seed=seed,
            prompt=prompt,
            count=parsed.num_images,
            fmt=self._config.image_format,
        )
        task = Task(id=uuid.uuid4().hex, api=API, prompt=prompt, image_specs=specs, payload=parsed)
        snapshot = self._engine.submit(task)
        self._stats.incr("wavespeed_submits")
        return snapshot

    def _base64(self, name: str) -> str:
        found = self._images.content(name)
        return "" if found is None else base64.b64encode(found[0]).decode("ascii")
