"""The task engine: one lifecycle shared by both simulated APIs.

A task moves ``queued -> processing -> completed | failed`` on a clock, or
``queued -> cancelled`` when a client cancels it in time. A single scheduler thread
(a heap of due events plus a condition variable) flips states at the right moments, so
tasks finish and callbacks fire whether or not anyone polls. With ``max_concurrency`` set,
tasks beyond the cap wait queued in FIFO order and their ``latency`` clock starts only when
a slot frees, like WaveSpeed's account concurrency; with ``over_capacity="reject"`` a submit
that would exceed the cap raises :class:`CapacityError` instead (the server answers 429).

All mutation happens under one lock. Code outside the engine only ever sees snapshots
(shallow copies) of tasks, so it can format responses without holding any lock.
"""

from __future__ import annotations

import copy
import heapq
import itertools
import random
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .config import SandboxConfig
from .images import ImageSpec, ImageStore
from .stats import Counters

QUEUED = "queued"
PROCESSING = "processing"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED})

FAIL_MARKER = "[fail]"
FILTER_MARKER = "[filter]"

# Share of the latency a task spends visibly ``queued`` before ``processing``, capped so a
# long latency still leaves only a short cancel window, as on the real services.
QUEUED_SHARE = 0.1
QUEUED_MAX_SECONDS = 0.5
# Upper bound on how long the scheduler sleeps, so knob changes (e.g. raising
# max_concurrency) take effect even when no event is due.
SCHEDULER_TICK = 0.5


@dataclass(eq=False)
class Task:
    """One simulated generation task.

    ``payload`` holds the API-specific request (immutable). Fields below ``status`` change
    over time; ``progress`` is only meaningful on snapshots (fraction 0..1 of the latency
    elapsed while processing).
    """

    id: str
    api: str
    prompt: str
    image_specs: tuple[ImageSpec, ...]
    payload: Any
    created_ns: int = field(default_factory=time.time_ns)
    will_fail: bool = False
    dropped: int = 0
    status: str = QUEUED
    slot_mono: float | None = None
    duration: float = 0.0
    finished_wall: float | None = None
    execution_ms: int = 0
    image_files: tuple[str, ...] = ()
    progress: float = 0.0

    @property
    def created_wall(self) -> float:
        return self.created_ns / 1e9

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def requested(self) -> int:
        return len(self.image_specs)


class CapacityError(Exception):
    """A submit refused because ``max_concurrency`` tasks are in progress (submitted, not
    yet terminal) and ``over_capacity`` is ``reject``. Nothing was registered."""

    def __init__(self, in_progress: int, cap: int) -> None:
        super().__init__(f"{in_progress} tasks in progress, the limit is {cap}")
        self.in_progress = in_progress
        self.cap = cap


class CancelResult:
    """Outcome names of :meth:`TaskEngine.cancel`."""

    CANCELLED = "cancelled"
    NOT_CANCELLABLE = "not_cancellable"
    NOT_FOUND = "not_found"


class TaskEngine:
    """Owns every task and the clock that moves them.

    ``on_terminal`` is called exactly once per task, with a snapshot, after it became
    terminal; never while the engine lock is held, and from the scheduler thread (or from
    the cancelling request's thread), so it must return quickly.
    """

    def __init__(
        self,
        config: SandboxConfig,
        images: ImageStore,
        stats: Counters,
        on_terminal: Callable[[Task], None],
    ) -> None:
        self._config = config
        self._images = images
        self._stats = stats
        self._on_terminal = on_terminal
        self._random = random.Random()
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)  # the scheduler sleeps on this
        self._settled = threading.Condition(self._lock)  # sync-mode waiters sleep on this
        self._tasks: dict[tuple[str, str], Task] = {}
        self._heap: list[tuple[float, int, str, Task]] = []
        self._sequence = itertools.count()
        self._waiting: deque[Task] = deque()
        self._running = 0
        self._peak_in_progress = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        # Renders a task's images while it runs (ImageStore.prepare), one at a time.
        self._renderer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sandbox-render")

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the scheduler thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="imagen-sandbox-scheduler", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop the scheduler and release every waiter; unfinished tasks stay unfinished."""
        with self._lock:
            self._stopping = True
            self._wakeup.notify_all()
            self._settled.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._renderer.shutdown(wait=False, cancel_futures=True)

    # --- API used by the protocol modules -----------------------------------------------

    def random_seed(self) -> int:
        """A seed for requests that asked for a random one (-1)."""
        with self._lock:
            return self._random.randint(0, 2**31 - 1)

    def exists(self, api: str, task_id: str) -> bool:
        with self._lock:
            return (api, task_id) in self._tasks

    def submit(self, task: Task) -> Task:
        """Register a new task, decide its outcome from the prompt and the knobs, schedule
        it, and return a snapshot (always ``queued``).

        Raises :class:`CapacityError` (registering nothing) when ``over_capacity`` is
        ``reject`` and ``max_concurrency`` tasks are already in progress; the check and the
        registration happen under one lock, so concurrent submits cannot overshoot the cap.
        """
        config = self._config
        with self._lock:
            cap = config.max_concurrency
            in_progress = self._running + len(self._waiting)
            if config.over_capacity == "reject" and 0 < cap <= in_progress:
                raise CapacityError(in_progress, cap)
            if FAIL_MARKER in task.prompt or self._random.random() < config.failure_rate:
                task.will_fail = True
            elif FILTER_MARKER in task.prompt or self._random.random() < config.filter_rate:
                task.dropped = 1
            self._tasks[(task.api, task.id)] = task
            self._waiting.append(task)
            self._peak_in_progress = max(self._peak_in_progress, in_progress + 1)
            self._start_waiting_locked(time.monotonic())
            return self._snapshot_locked(task, time.monotonic())

    def get(self, api: str, task_id: str) -> Task | None:
        """Snapshot of a task of ``api``, or None."""
        with self._lock:
            task = self._tasks.get((api, task_id))
            return None if task is None else self._snapshot_locked(task, time.monotonic())

    def cancel(self, api: str, task_id: str) -> tuple[str, Task | None]:
        """Cancel a task that is still ``queued``; return a :class:`CancelResult` name and a
        snapshot (None if not found)."""
        with self._lock:
            task = self._tasks.get((api, task_id))
            if task is None:
                return CancelResult.NOT_FOUND, None
            now = time.monotonic()
            if task.status != QUEUED:
                return CancelResult.NOT_CANCELLABLE, self._snapshot_locked(task, now)
            if task.slot_mono is None:
                self._waiting.remove(task)
            else:
                self._running -= 1
            task.status = CANCELLED
            task.finished_wall = time.time()
            self._stats.incr("tasks_cancelled")
            self._start_waiting_locked(now)
            self._settled.notify_all()
            snapshot = self._snapshot_locked(task, now)
        self._on_terminal(snapshot)
        return CancelResult.CANCELLED, snapshot

    def wait_settled(self, api: str, task_id: str, timeout: float) -> Task | None:
        """Block up to ``timeout`` seconds until the task is terminal (or the engine stops);
        return its latest snapshot either way (None if unknown)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            task = self._tasks.get((api, task_id))
            if task is None:
                return None
            while not task.terminal and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._settled.wait(remaining)
            return self._snapshot_locked(task, time.monotonic())

    def counts(self) -> dict[str, int]:
        """``active`` (tasks holding a slot), ``waiting`` (queued behind the cap), ``tasks``
        (ever created) and ``peak_in_progress`` (the most tasks ever submitted and not yet
        terminal at one time, holding a slot or waiting for one)."""
        with self._lock:
            return {
                "active": self._running,
                "waiting": len(self._waiting),
                "tasks": len(self._tasks),
                "peak_in_progress": self._peak_in_progress,
            }

    # --- internals ----------------------------------------------------------------------

    def _snapshot_locked(self, task: Task, now: float) -> Task:
        snapshot = copy.copy(task)
        if task.status == PROCESSING and task.slot_mono is not None:
            elapsed = now - task.slot_mono
            fraction = elapsed / task.duration if task.duration > 0 else 1.0
            snapshot.progress = min(max(fraction, 0.0), 0.99)
        elif task.status == COMPLETED:
            snapshot.progress = 1.0
        return snapshot

    def _schedule_locked(self, due: float, kind: str, task: Task) -> None:
        heapq.heappush(self._heap, (due, next(self._sequence), kind, task))

    def _start_waiting_locked(self, now: float) -> None:
        cap = self._config.max_concurrency
        started = False
        while self._waiting and (cap <= 0 or self._running < cap):
            task = self._waiting.popleft()
            task.slot_mono = now
            jitter = float(self._config.latency_jitter)
            extra = self._random.uniform(0.0, jitter) if jitter > 0 else 0.0
            task.duration = max(0.0, float(self._config.latency) + extra)
            self._running += 1
            queued_for = min(task.duration * QUEUED_SHARE, QUEUED_MAX_SECONDS)
            self._schedule_locked(now + queued_for, PROCESSING, task)
            self._schedule_locked(now + task.duration, "finish", task)
            if not task.will_fail and not self._stopping:
                delivered = task.image_specs[: max(0, task.requested - task.dropped)]
                self._renderer.submit(self._images.prepare, delivered)
            started = True
        if started:
            self._wakeup.notify()

    def _finish_locked(self, task: Task, now: float) -> None:
        self._running -= 1
        task.finished_wall = time.time()
        task.execution_ms = round((now - (task.slot_mono or now)) * 1000)
        if task.will_fail:
            task.status = FAILED
            self._stats.incr("tasks_failed")
        else:
            delivered = task.image_specs[: max(0, task.requested - task.dropped)]
            # Register files before the status flips, so nobody sees "completed" without
            # its images.
            task.image_files = tuple(self._images.register(spec) for spec in delivered)
            task.status = COMPLETED
            self._stats.incr("tasks_completed")
        self._settled.notify_all()

    def _run(self) -> None:
        while True:
            settled: list[Task] = []
            with self._lock:
                if self._stopping:
                    return
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    _, _, kind, task = heapq.heappop(self._heap)
                    # Events of a cancelled task are stale; the status check skips them.
                    if kind == PROCESSING and task.status == QUEUED:
                        task.status = PROCESSING
                    elif kind == "finish" and task.status == PROCESSING:
                        self._finish_locked(task, now)
                        settled.append(self._snapshot_locked(task, now))
                self._start_waiting_locked(now)
                if not settled:
                    timeout = SCHEDULER_TICK
                    if self._heap:
                        timeout = min(timeout, max(0.0, self._heap[0][0] - now))
                    self._wakeup.wait(timeout)
                    continue
            for snapshot in settled:
                try:
                    self._on_terminal(snapshot)
                except Exception:  # a bug in a hook must not stop the clock for every task
                    traceback.print_exc()
