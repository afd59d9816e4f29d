"""Thread-safe counters behind ``SandboxServer.stats``."""

from __future__ import annotations

import threading

# Every counter exists from the start, so a snapshot always has the same keys and a test
# can assert ``stats["callbacks_sent"] == 0`` without a KeyError.
COUNTER_NAMES: tuple[str, ...] = (
    "wave_submits",  # new Wave tasks created (idempotent replays excluded)
    "wave_idempotent_replays",  # submits answered with an existing task via Idempotency-Key
    "wave_polls",  # GET /v1/tasks/{id}
    "wave_cancels",  # successful cancels
    "wavespeed_submits",  # new WaveSpeed predictions created
    "wavespeed_polls",  # GET /api/v3/predictions/{id}[/result]
    "wavespeed_sync_timeouts",  # sync-mode submits answered with code 5004
    "downloads",  # image files served
    "callbacks_sent",  # deliveries answered 2xx (a duplicate counts again)
    "callbacks_failed",  # deliveries given up after all retries
    "callbacks_dropped",  # deliveries suppressed by drop_callbacks
    "callback_attempts",  # every POST attempt, retries included
    "rate_limited",  # submits answered 429 by the rate-limit knobs
    "over_capacity",  # submits answered 429: max_concurrency tasks in progress (reject mode)
    "server_errors",  # submits answered 500 by server_error_next
    "unavailable",  # submits answered 503 by unavailable_rate
    "unauthorized",  # requests answered 401
    "tasks_completed",
    "tasks_failed",
    "tasks_cancelled",
)


class Counters:
    """Named integer counters; ``incr`` and ``snapshot`` may be called from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)

    def incr(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to counter ``name`` (created on first use if not predeclared)."""
        with self._lock:
            self._values[name] = self._values.get(name, 0) + amount

    def snapshot(self) -> dict[str, int]:
        """A consistent copy of all counters at one instant."""
        with self._lock:
            return dict(self._values)
