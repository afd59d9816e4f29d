"""Fixtures for the whole suite: ``enqueued``, which records the jobs the code queues, and
the real parts: redis-server, the sandbox provider over HTTP, RQ worker processes and the
live Django server that receives the webhooks.

tests/admin/conftest.py still has an ``enqueued`` of its own (the submit ids given to
``services.enqueue_submits``), which overrides this one for the admin tests.

Locally a test whose part is missing is skipped with the reason; under CI (``CI=true``) such
a skip is turned into a failure, so a green CI run means everything ran.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from campaigns import stack

IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}

(stack.BASE_DIR / ".run").mkdir(exist_ok=True)


def compile_catalogues() -> None:
    """The app's translations compiled as ``make`` does (.mo files are never committed):
    each .po newer than its .mo, with msgfmt when it is installed. Without msgfmt,
    tests/unit/test_i18n_catalogue.py says what is missing."""
    msgfmt = shutil.which("msgfmt")
    if msgfmt is None:
        return
    for po in sorted((stack.BASE_DIR / "imagen_assets" / "locale").glob("*/LC_MESSAGES/*.po")):
        mo = po.with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        partial = mo.with_name(f".{mo.name}.{os.getpid()}")
        subprocess.run([msgfmt, "--check-format", "-o", str(partial), str(po)], check=True)
        partial.replace(mo)


compile_catalogues()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"Skipped under CI, which counts as a failure: {reason}"


# -- the queue -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Enqueued:
    """One call of ``imagen_assets.queueing.enqueue``; ``func`` is the job as a callable."""

    func: Callable[..., Any]
    args: tuple[Any, ...]
    delay: float | None
    job_id: str | None
    timeout: int | None = None

    @property
    def name(self) -> str:
        return self.func.__name__


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[Enqueued]:
    """Every job the code queues, in order (nothing reaches Redis).

    ``queueing.enqueue`` takes a job as a function or as its dotted path; both are recorded
    as the function, so tests compare with ``jobs.submit`` either way.
    """
    from django.utils.module_loading import import_string

    from imagen_assets import queueing

    calls: list[Enqueued] = []

    def record(
        func: queueing.Job_,
        *args: Any,
        delay: float | None = None,
        job_id: str | None = None,
        timeout: int | None = None,
    ) -> bool:
        job = import_string(func) if isinstance(func, str) else func
        calls.append(Enqueued(job, args, delay, job_id, timeout))
        return True

    monkeypatch.setattr(queueing, "enqueue", record)
    return calls


# -- parts -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server on a unix socket for the whole session."""
    try:
        process, url = stack.start_redis(tmp_path_factory.mktemp("redis"))
    except stack.StackError as exc:
        pytest.skip(f"redis-server unavailable: {exc}")
    yield url
    process.stop()


@dataclass
class RedisServer:
    """A redis-server of one test's own, which the test may kill and start again (in the
    same directory, so with ``appendonly`` its append-only file is reloaded)."""

    workdir: Path
    appendonly: bool = False
    process: stack.Process | None = None
    url: str = ""

    def start(self) -> RedisServer:
        self.process, self.url = stack.start_redis(self.workdir, appendonly=self.appendonly)
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer: nothing is written on the way out."""
        assert self.process is not None
        self.process.kill()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., RedisServer]]:
    """Start private redis-servers (``redis_server(appendonly=False)``); stopped after."""
    started: list[RedisServer] = []

    def start(appendonly: bool = False) -> RedisServer:
        try:
            server = RedisServer(tmp_path_factory.mktemp("r"), appendonly).start()
        except stack.StackError as exc:
            pytest.skip(f"redis-server unavailable: {exc}")
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def redis_conn(redis_url: str) -> Iterator[Any]:
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[Any]:
    from imagen_assets.sandbox import SandboxConfig, SandboxServer

    server = SandboxServer(SandboxConfig(latency=0.3), host="127.0.0.1", port=0)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sandbox(sandbox_server: Any) -> Iterator[Any]:
    """The session's sandbox server; knobs changed by a test are restored after it."""
    saved = replace(sandbox_server.config)
    yield sandbox_server
    for name, value in vars(saved).items():
        setattr(sandbox_server.config, name, value)


def database_url() -> str:
    """The URL of the database the tests use now (the test database), for subprocesses."""
    from django.db import connection

    config = connection.settings_dict
    if config["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{config['NAME']}"
    return (
        f"postgres://{config['USER']}:{config['PASSWORD']}@{config['HOST'] or '127.0.0.1'}:"
        f"{config['PORT'] or 5432}/{config['NAME']}"
    )


@pytest.fixture
def stack_env(
    settings: Any,
    transactional_db: None,
    redis_conn: Any,
    redis_url: str,
    sandbox: Any,
    live_server: Any,
    tmp_path: Path,
) -> dict[str, str]:
    """One environment for the worker processes and the same settings in this process.

    Providers: ``sandbox`` (the default), ``wave`` and ``wavespeed``, all pointed at the
    sandbox over HTTP, with webhooks calling back into the live Django server.
    """

    media = tmp_path / "media"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "campaigns.settings",
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis_url,
        "MEDIA_ROOT": str(media),
        "IMAGEN_SANDBOX_URL": sandbox.url,
        "IMAGEN_WEBHOOK_BASE_URL": live_server.url,
        "IMAGEN_DOWNLOAD_ALLOW_HOSTS": "127.0.0.1,localhost",
        "IMAGEN_WAVE_API_KEY": "wave-test-key",
        "IMAGEN_WAVE_BASE_URL": sandbox.url,
        "IMAGEN_WAVESPEED_API_KEY": "wavespeed-test-key",
        "IMAGEN_WAVESPEED_BASE_URL": sandbox.url,
        "IMAGEN_LOG_LEVEL": "INFO",
    }
    apply_env_settings(settings, env)
    return env


def apply_env_settings(settings: Any, env: dict[str, str]) -> None:
    """Give this process the settings the example site would build from ``env``."""
    from campaigns.settings import imagen_assets_from_env, rq_queues_from_env, storages_from_env

    settings.RQ_QUEUES = rq_queues_from_env(env)
    settings.MEDIA_ROOT = env["MEDIA_ROOT"]
    settings.IMAGEN_ASSETS = imagen_assets_from_env(env)
    settings.STORAGES = storages_from_env(env)


@pytest.fixture
def start_worker(stack_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Start RQ worker processes (``rqworker --with-scheduler``); all stopped after the test."""
    import redis
    from rq import Worker

    started: list[stack.Process] = []

    def start(env: dict[str, str] | None = None, wait: bool = True) -> stack.Process:
        env = env or stack_env
        log = tmp_path / f"worker-{len(started)}.log"
        process = stack.start_worker(env, log)
        started.append(process)
        if wait:
            connection = redis.Redis.from_url(env["REDIS_URL"])
            deadline = time.monotonic() + 30
            while len(Worker.all(connection=connection)) < len([p for p in started if p.alive()]):
                if not process.alive() or time.monotonic() > deadline:
                    raise AssertionError(f"worker did not start:\n{process.log_tail()}")
                time.sleep(0.1)
            connection.close()
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def worker(start_worker: Callable[..., Any]) -> Any:
    return start_worker()


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)
