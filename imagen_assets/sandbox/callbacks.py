"""Outgoing callbacks (Wave) and webhooks (WaveSpeed), delivered off the request path.

Deliveries run on a small thread pool with one shared httpx client, so a slow or dead
receiver never blocks request handling or the task clock. Each delivery is retried up to
three times (after 0.5 s, 1 s, 2 s) on a connection error or a non-2xx answer. The
fault knobs (drop, duplicate, out-of-order) are applied here, in one place, for both APIs.
"""

from __future__ import annotations

import secrets
import sys
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from .config import SandboxConfig
from .stats import Counters

RETRY_BACKOFF: tuple[float, ...] = (0.5, 1.0, 2.0)
DELIVERY_TIMEOUT = 5.0
# Pause between the terminal delivery and the stale one sent by ``out_of_order``: long
# enough that a receiver has finished handling the first, short enough for fast tests.
LATE_DELAY = 0.2
USER_AGENT = "imagen-assets-sandbox/1"

HeaderFactory = Callable[[str, bytes], Mapping[str, str]]
"""Called before every attempt with ``(delivery_id, body)``; returns extra headers. The
delivery id is the same for all retries of one delivery and fresh for the next delivery."""


@dataclass(frozen=True)
class Delivery:
    """One message to POST: target URL, exact body bytes, optional per-attempt headers."""

    url: str
    body: bytes
    headers: HeaderFactory | None = None


class CallbackDispatcher:
    """Queues deliveries and sends them in the background; never raises to the caller."""

    def __init__(self, config: SandboxConfig, stats: Counters, max_workers: int = 16) -> None:
        self._config = config
        self._stats = stats
        self._closed = threading.Event()
        # Created on first use: building a client loads the CA bundle (~30 ms), which would
        # otherwise slow down every server start in a test suite that never calls back.
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="imagen-sandbox-callback"
        )

    def dispatch(self, terminal: Delivery, late: Delivery | None = None) -> None:
        """Send ``terminal`` (twice with ``duplicate_callbacks``), then ``late`` if
        ``out_of_order`` is on; nothing at all with ``drop_callbacks``. Returns immediately;
        deliveries of one call happen in that order, one after the other."""
        config = self._config
        if config.drop_callbacks:
            self._stats.incr("callbacks_dropped")
            return
        plan: list[tuple[float, Delivery]] = [(0.0, terminal)]
        if config.duplicate_callbacks:
            plan.append((0.0, terminal))
        if config.out_of_order and late is not None:
            plan.append((LATE_DELAY, late))
        if self._closed.is_set():
            return
        try:
            self._pool.submit(self._deliver_in_order, plan)
        except RuntimeError:  # the pool shut down between the check and the submit
            return

    def close(self) -> None:
        """Stop delivering: pending deliveries are abandoned, retries stop waiting."""
        self._closed.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._client_lock:
            if self._client is not None:
                self._client.close()

    def _http(self) -> httpx.Client:
        with self._client_lock:
            if self._client is None:
                # trust_env=False: a sandbox must not route its callbacks through the
                # developer's proxy settings; redirects are not followed, like most senders.
                self._client = httpx.Client(
                    timeout=DELIVERY_TIMEOUT, trust_env=False, follow_redirects=False
                )
            return self._client

    def _deliver_in_order(self, plan: list[tuple[float, Delivery]]) -> None:
        for delay, delivery in plan:
            if delay and self._closed.wait(delay):
                return
            self._deliver(delivery)

    def _deliver(self, delivery: Delivery) -> None:
        delivery_id = "msg_" + secrets.token_hex(12)
        for attempt in range(len(RETRY_BACKOFF) + 1):
            if self._closed.is_set():
                return
            headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
            if delivery.headers is not None:
                headers.update(delivery.headers(delivery_id, delivery.body))
            self._stats.incr("callback_attempts")
            outcome: str
            try:
                response = self._http().post(delivery.url, content=delivery.body, headers=headers)
                outcome = str(response.status_code)
                if response.is_success:
                    self._stats.incr("callbacks_sent")
                    self._log(delivery, attempt, outcome)
                    return
            except Exception as exc:  # any failure reaching a client-chosen URL is a miss
                outcome = type(exc).__name__
            self._log(delivery, attempt, outcome)
            if attempt < len(RETRY_BACKOFF) and self._closed.wait(RETRY_BACKOFF[attempt]):
                return
        self._stats.incr("callbacks_failed")

    def _log(self, delivery: Delivery, attempt: int, outcome: str) -> None:
        if self._config.verbose:
            print(
                f"sandbox callback POST {delivery.url} attempt {attempt + 1}: {outcome}",
                file=sys.stderr,
            )
