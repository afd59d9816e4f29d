"""``make demo`` stops everything it started, however it is stopped (issue item 14).

The demo runs as it does under ``make demo`` (``python -m campaigns.demo``, a real Redis,
sandbox, RQ worker and runserver), in its own session and a temporary run directory on free
ports. A watcher records every process below it, whatever group or session it moved to, from
its start to its end; after the demo exits none of them may still run and the ports must be
free, so that the next start works.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from campaigns import stack

pytestmark = pytest.mark.integration

# Bounds for waits (not timed asserts): generous for a loaded 2-core CI machine.
START_TIMEOUT = 90.0
EXIT_TIMEOUT = 60.0


@dataclass
class Demo:
    """One run of ``python -m campaigns.demo`` and every process seen below it."""

    run_dir: Path
    web_port: int
    sandbox_port: int
    popen: subprocess.Popen[bytes] | None = None
    seen: dict[stack.Identity, str] = field(default_factory=dict)
    _watching: threading.Event = field(default_factory=threading.Event)
    _watcher: threading.Thread | None = None

    def start(self) -> Demo:
        # Nothing of this process's environment (DJANGO_SETTINGS_MODULE of the tests, the
        # PostgreSQL pass's DATABASE_URL, ...) may reach the demo: its own settings only.
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("IMAGEN_", "DEMO_", "DATABASE_", "AWS_", "DJANGO_"))
            and name not in ("REDIS_URL", "MEDIA_ROOT")
        }
        env |= {
            "DEMO_RUN_DIR": str(self.run_dir),
            "DEMO_PORT": str(self.web_port),
            "DEMO_SANDBOX_PORT": str(self.sandbox_port),
        }
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "campaigns.demo"],
            cwd=stack.BASE_DIR,
            env=env,
            stdout=open(self.output_path, "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own group: the "terminal" these tests press Ctrl-C in
        )
        self._watching.set()
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()
        return self

    @property
    def output_path(self) -> Path:
        return self.run_dir.parent / "demo-output.log"

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def _watch(self) -> None:
        while self._watching.is_set():
            for found in stack.descendants(self.pid):
                # Read again each time: just after the fork it is still the demo's command.
                self.seen[found] = _command(found[0]) or self.seen.get(found, "?")
            time.sleep(0.02)

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def describe(self) -> str:
        logs = self.run_dir / "logs"
        tails = "".join(
            f"\n--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            for log in sorted(logs.glob("*.log"))
        )
        return f"demo output:\n{self.output()}{tails}"

    def wait_for_port(self, port: int) -> None:
        """Until ``port`` listens (that child has started)."""
        deadline = time.monotonic() + START_TIMEOUT
        while not stack.port_open("127.0.0.1", port):
            assert self.popen is not None
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"port {port} never opened\n{self.describe()}")
            time.sleep(0.05)

    def ctrl_c(self) -> None:
        """What a Ctrl-C in its terminal does: SIGINT to its foreground process group."""
        os.killpg(self.pid, signal.SIGINT)

    def wait_for_exit(self) -> int:
        assert self.popen is not None
        try:
            code = self.popen.wait(EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the demo still runs {EXIT_TIMEOUT:g} s after the signals\n{self.describe()}"
            ) from None
        finally:
            self._watching.clear()
            if self._watcher is not None:
                self._watcher.join()
        return code

    def left_running(self) -> list[str]:
        """What of everything seen below the demo still runs, after a bounded wait."""

        def left() -> list[str]:
            return [f"{pid} {name}" for (pid, start), name in self.seen.items() if
                    stack.is_alive((pid, start))]  # fmt: skip

        deadline = time.monotonic() + 5
        while left() and time.monotonic() < deadline:
            time.sleep(0.05)
        return left()

    def ports_in_use(self) -> list[int]:
        """The demo's ports that the next start could not listen on, after a bounded wait.

        A process killed with SIGKILL reads as gone (its main thread a zombie) a moment
        before its last thread has exited and the kernel has closed its sockets, so the
        ports get the same short wait as the processes. The check is the next start's own
        ``bind`` (with ``SO_REUSEADDR``, as both servers set it), not a ``connect``: on a
        port of the ephemeral range a connect to nothing can, rarely, connect to itself.
        """

        def in_use() -> list[int]:
            return [port for port in (self.web_port, self.sandbox_port) if
                    not _can_listen(port)]  # fmt: skip

        deadline = time.monotonic() + 5
        while in_use() and time.monotonic() < deadline:
            time.sleep(0.05)
        return in_use()

    def cleanup(self) -> None:
        """After a failed test: nothing of it may survive into the next one."""
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(10)
        self._watching.clear()
        stack.kill_all(list(self.seen))


def _can_listen(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
        return True


def unix_socket_listens(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as sock:
        return sock.connect_ex(str(path)) == 0


def _command(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()[:120]
    except OSError:
        return ""


@pytest.fixture
def run_dir() -> Iterator[Path]:
    # Short: Redis's unix socket lives in it and its path must fit in 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="imagen-demo-"))
    yield root / "run"
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def demos(run_dir: Path) -> Iterator[list[Demo]]:
    started: list[Demo] = []
    yield started
    for demo in started:
        demo.cleanup()


def new_demo(demos: list[Demo], run_dir: Path, ports: tuple[int, int] | None = None) -> Demo:
    web, sandbox = ports or (stack.free_port(), stack.free_port())
    demo = Demo(run_dir, web, sandbox)
    demos.append(demo)
    return demo.start()


def assert_stopped_everything(demo: Demo, code: int) -> None:
    assert code == 0, demo.describe()
    assert demo.seen, "the watcher saw no process below the demo"
    assert demo.left_running() == [], demo.describe()
    assert demo.ports_in_use() == [], demo.describe()
    assert not unix_socket_listens(demo.run_dir / "redis" / "redis.sock")
    assert "Stopped everything the demo started." in demo.output()


def test_two_quick_ctrl_c_while_starting_stop_everything_and_the_next_start_works(
    run_dir: Path, demos: list[Demo]
) -> None:
    first = new_demo(demos, run_dir)
    # Interrupted while it starts the others: the sandbox runs, the worker and the web
    # server are being started (where a Ctrl-C used to leave the sandbox and the worker up).
    first.wait_for_port(first.sandbox_port)
    first.ctrl_c()
    time.sleep(0.1)
    first.ctrl_c()

    assert_stopped_everything(first, first.wait_for_exit())
    commands = " ".join(first.seen.values())
    assert "redis-server" in commands and "imagen_sandbox" in commands

    # Same run directory and ports: the next start is not refused; this time everything runs
    # (Redis, sandbox, worker, web server) when a Ctrl-C comes, then a SIGTERM during the
    # shutdown (a supervisor losing patience).
    second = new_demo(demos, run_dir, (first.web_port, first.sandbox_port))
    second.wait_for_port(second.web_port)
    second.ctrl_c()
    time.sleep(0.1)
    os.kill(second.pid, signal.SIGTERM)
    second.ctrl_c()

    assert_stopped_everything(second, second.wait_for_exit())
    commands = " ".join(second.seen.values())
    for part in ("redis-server", "imagen_sandbox", "rqworker", "runserver"):
        assert part in commands, commands
    assert "Port" not in second.output()  # not "Port ... is in use"


def test_a_sigkilled_demo_takes_its_children_along(run_dir: Path, demos: list[Demo]) -> None:
    demo = new_demo(demos, run_dir)
    demo.wait_for_port(demo.web_port)
    os.kill(demo.pid, signal.SIGKILL)  # no clean-up in the demo at all

    assert demo.wait_for_exit() == -signal.SIGKILL
    commands = " ".join(demo.seen.values())
    for part in ("redis-server", "imagen_sandbox", "rqworker", "runserver"):
        assert part in commands, commands
    assert demo.left_running() == [], demo.describe()
    assert demo.ports_in_use() == [], demo.describe()
