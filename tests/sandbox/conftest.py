"""Fixtures for the sandbox tests: a live server on a free port, an authenticated client,
and a tiny HTTP receiver that records the callbacks and webhooks the sandbox sends.

Nothing here needs Django; the suite runs with ``-p no:django``.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import httpx
import pytest

from imagen_assets.sandbox import SandboxConfig, SandboxServer

T = TypeVar("T")
TOKEN = "test-token"


@dataclass(frozen=True)
class Received:
    """One request the receiver got: path, lower-cased headers, raw body, arrival time."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


class CallbackReceiver:
    """Records every POST. ``answers`` is a queue of status codes to reply with (then 200)."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.answers: list[int] = []
        self._condition = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._condition:
                    receiver.requests.append(Received(self.path, headers, body, time.monotonic()))
                    status = receiver.answers.pop(0) if receiver.answers else 200
                    receiver._condition.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/hook"

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        """Block until at least ``count`` requests arrived; fail the test otherwise."""
        with self._condition:
            arrived = self._condition.wait_for(lambda: len(self.requests) >= count, timeout)
            assert arrived, f"expected {count} callbacks, got {len(self.requests)}"
            return list(self.requests)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="session")
def tls_context() -> ssl.SSLContext:
    # Every httpx.Client would otherwise load the CA bundle again (~30 ms each).
    return ssl.create_default_context()


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    """A running sandbox with a short latency; tests may change ``sandbox.config``."""
    with SandboxServer(SandboxConfig(latency=0.05)) as server:
        yield server


@pytest.fixture
def client(sandbox: SandboxServer, tls_context: ssl.SSLContext) -> Iterator[httpx.Client]:
    """An httpx client for ``sandbox`` sending a Bearer token (absolute URLs work too)."""
    with httpx.Client(
        base_url=sandbox.url,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
        trust_env=False,
        verify=tls_context,
    ) as http:
        yield http


@pytest.fixture
def anonymous(sandbox: SandboxServer, tls_context: ssl.SSLContext) -> Iterator[httpx.Client]:
    """An httpx client for ``sandbox`` without any Authorization header."""
    with httpx.Client(
        base_url=sandbox.url, timeout=10, trust_env=False, verify=tls_context
    ) as http:
        yield http


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    server = CallbackReceiver()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def wait_until() -> Callable[..., Any]:
    """``wait_until(fn, timeout=5)``: call ``fn`` until it returns something truthy and
    return that; fail the test at the deadline."""

    def wait(fn: Callable[[], T], timeout: float = 5.0, interval: float = 0.02) -> T:
        deadline = time.monotonic() + timeout
        while True:
            value = fn()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout} s (last: {value!r})")
            time.sleep(interval)

    return wait
