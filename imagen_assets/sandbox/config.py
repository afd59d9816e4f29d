"""The knobs of the sandbox server.

A :class:`SandboxConfig` is deliberately a plain mutable dataclass: the server reads its
attributes on every request and every task start, so a test can turn a knob
(``server.config.failure_rate = 1``) while the server runs and the next request sees it.
Single attribute writes are atomic in CPython, so no lock is needed for that pattern; the
one-shot counters (``rate_limit_next``, ``server_error_next``) are decremented by the server
under its own lock.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, fields
from typing import Any, Literal

WaveProgressStyle = Literal["int", "percent"]
WaveTimestamps = Literal["ms", "s"]
WaveUrlStyle = Literal["list", "string"]
ImageFormat = Literal["jpeg", "png"]
OverCapacity = Literal["queue", "reject"]

WAVE_PROGRESS_STYLES: tuple[str, ...] = ("int", "percent")
WAVE_TIMESTAMP_UNITS: tuple[str, ...] = ("ms", "s")
WAVE_URL_STYLES: tuple[str, ...] = ("list", "string")
IMAGE_FORMATS: tuple[str, ...] = ("jpeg", "png")
OVER_CAPACITY_CHOICES: tuple[str, ...] = ("queue", "reject")

# Knobs that must never be read or changed over the sandbox's own HTTP control endpoint.
SECRET_FIELDS: frozenset[str] = frozenset({"api_key", "webhook_secret"})


def new_webhook_secret() -> str:
    """Return a fresh secret in WaveSpeed's format: ``whsec_`` + 48 hex characters."""
    return "whsec_" + secrets.token_hex(24)


@dataclass
class SandboxConfig:
    """Everything that makes the sandbox slow, flaky or differently shaped.

    Defaults give a well-behaved server: 2 s per task, no failures, no rate limits,
    callbacks delivered once, Wave responses in the int / milliseconds / url-list style.
    Invalid values raise ``ValueError`` at construction and in :meth:`update`.
    """

    latency: float = 2.0
    """Seconds from the moment a task gets a slot until it is terminal."""
    latency_jitter: float = 0.0
    """Up to this many seconds added at random to each task's ``latency``."""
    failure_rate: float = 0.0
    """Fraction (0..1) of tasks that end ``failed``. A prompt containing ``[fail]`` always fails."""
    filter_rate: float = 0.0
    """Fraction (0..1) of tasks that lose their last image to the simulated safety filter.
    A prompt containing ``[filter]`` always does."""
    rate_limit_rate: float = 0.0
    """Fraction (0..1) of submits answered 429 with ``Retry-After: 1``."""
    unavailable_rate: float = 0.0
    """Fraction (0..1) of submits answered 503 (service unavailable)."""
    rate_limit_next: int = 0
    """Answer the next N submits with 429 (deterministic, for tests)."""
    server_error_next: int = 0
    """Answer the next N submits with 500 (deterministic, for tests)."""
    drop_callbacks: bool = False
    """Never deliver Wave callbacks or WaveSpeed webhooks."""
    duplicate_callbacks: bool = False
    """Deliver every callback/webhook twice."""
    out_of_order: bool = False
    """After the terminal delivery, send a stale one (WaveSpeed: a ``processing`` prediction;
    Wave: the terminal object again, later)."""
    max_concurrency: int = 0
    """Tasks in progress at once across both APIs; 0 = unlimited. What happens to a submit
    beyond it is ``over_capacity``'s choice."""
    over_capacity: OverCapacity = "queue"
    """Beyond ``max_concurrency``: ``queue`` (the task waits for a slot, as WaveSpeed's
    account levels are documented to behave) or ``reject`` (the submit is answered 429 while
    that many tasks are submitted and not yet terminal: a provider enforcing its cap
    strictly, so that a client which overshoots it shows up as 429s)."""
    api_key: str | None = None
    """If set, the only accepted Bearer token; if None any non-empty Bearer token works."""
    webhook_secret: str = field(default_factory=new_webhook_secret)
    """Secret (``whsec_...``) that signs WaveSpeed webhooks."""
    sync_timeout: float = 90.0
    """WaveSpeed ``enable_sync_mode``: seconds to block before answering code 5004."""
    wave_progress_style: WaveProgressStyle = "int"
    """Wave ``progress``: ``int`` 0..100 (older docs) or ``percent`` strings like ``"45%"``."""
    wave_timestamps: WaveTimestamps = "ms"
    """Wave ``created_at``/``completed_at``/``expires_at`` in Unix ``ms`` or ``s``."""
    wave_url_style: WaveUrlStyle = "list"
    """Wave ``result.images[i].url`` as a one-element ``list`` or a bare ``string``."""
    image_format: ImageFormat = "jpeg"
    """Format of served images (both providers document JPEG/PNG outputs; default JPEG)."""
    verbose: bool = False
    """Log every request to stderr."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first knob whose value is out of range."""
        if self.latency < 0:
            raise ValueError("latency must be >= 0 seconds")
        if self.latency_jitter < 0:
            raise ValueError("latency_jitter must be >= 0 seconds")
        for name in ("failure_rate", "filter_rate", "rate_limit_rate", "unavailable_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
        for name in ("rate_limit_next", "server_error_next", "max_concurrency"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.sync_timeout < 0:
            raise ValueError("sync_timeout must be >= 0 seconds")
        if not self.webhook_secret.startswith("whsec_") or len(self.webhook_secret) <= 6:
            raise ValueError("webhook_secret must look like 'whsec_<something>'")
        if self.api_key == "":
            raise ValueError("api_key must be None or a non-empty string")
        choices = {
            "wave_progress_style": WAVE_PROGRESS_STYLES,
            "wave_timestamps": WAVE_TIMESTAMP_UNITS,
            "wave_url_style": WAVE_URL_STYLES,
            "image_format": IMAGE_FORMATS,
            "over_capacity": OVER_CAPACITY_CHOICES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}")

    def update(self, **changes: Any) -> None:
        """Apply several knob changes at once, or none if any is unknown or invalid."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown sandbox setting(s): {', '.join(unknown)}")
        candidate = SandboxConfig(**{**self.as_dict(), **changes})
        for name in changes:
            setattr(self, name, getattr(candidate, name))

    def as_dict(self) -> dict[str, Any]:
        """All knobs, secrets included."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def public_dict(self) -> dict[str, Any]:
        """All knobs except the secrets, for display and the control endpoint."""
        data = {k: v for k, v in self.as_dict().items() if k not in SECRET_FIELDS}
        data["api_key_required"] = self.api_key is not None
        return data
