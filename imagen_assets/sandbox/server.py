"""The HTTP server: routing, authentication, fault injection, and the public handle.

``http.server.ThreadingHTTPServer`` serves each connection on its own daemon thread with
HTTP/1.1 keep-alive (every answer has a Content-Length), so httpx connection pools work
and hundreds of concurrent polls are fine. The protocol modules never see sockets: the
handler turns each request into a :class:`~.http_types.Request` and writes back the
:class:`~.http_types.Response` they return.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import random
import re
import socket
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from .callbacks import CallbackDispatcher
from .config import SECRET_FIELDS, SandboxConfig
from .engine import CapacityError, Task, TaskEngine
from .http_types import Request, Response, json_response
from .images import ImageStore
from .stats import Counters
from .wave import API as WAVE
from .wave import WaveAPI
from .wavespeed import API as WAVESPEED
from .wavespeed import WaveSpeedAPI

MAX_BODY_BYTES = 1024 * 1024
RATE_LIMIT = "rate_limit"
SERVER_ERROR = "server_error"
UNAVAILABLE = "unavailable"


class _ApiFront(Protocol):
    """The error answers each simulated API gives in its own format."""

    def unauthorized(self) -> Response: ...
    def rate_limited(self) -> Response: ...
    def over_capacity(self, error: CapacityError) -> Response: ...
    def server_error(self) -> Response: ...
    def unavailable(self) -> Response: ...


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Callable[..., Response]
    api: str | None = None  # set: Bearer auth required, errors in that API's format
    submit: bool = False  # set: subject to the rate-limit / server-error knobs


class _ThreadingServer(ThreadingHTTPServer):
    daemon_threads = True
    # Never wait for keep-alive connection threads on close; stop() shuts their sockets.
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: SandboxServer) -> None:
        self.app = app
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, connection: socket.socket, *, add: bool) -> None:
        with self._connections_lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the peer
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client vanishing mid-answer is normal for a test double; anything else is a bug.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "imagen-assets-sandbox/1"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed after this many seconds
    # Buffer writes so status line, headers and body leave in one segment: with separate
    # small writes, Nagle's algorithm and the client's delayed ACK add ~40 ms per answer.
    wbufsize = -1
    server: _ThreadingServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        self.server.track(self.connection, add=False)
        super().finish()

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.app.config.verbose:
            super().log_message(format, *args)

    def _handle(self) -> None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            self._send(json_response(411, {"error": "Content-Length required"}))
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            # The body is left unread, so the connection cannot be reused.
            self.close_connection = True
            self._send(json_response(413, {"error": "body missing a valid length or too large"}))
            return
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        app = self.server.app
        request = Request(
            method=self.command,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers=self.headers,
            body=body,
            base_url=f"http://{self.headers.get('Host') or app.authority}",
        )
        try:
            response = app.handle(request)
        except Exception:
            traceback.print_exc()
            response = json_response(500, {"error": "sandbox internal error"})
        self._send(response)

    def _send(self, response: Response) -> None:
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(response.body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class SandboxServer:
    """A local server speaking both the Wave and the WaveSpeed API.

    The socket is bound and listening as soon as the object exists, so :attr:`url` is
    valid immediately (port 0 picks a free port). :meth:`start` begins serving on
    background daemon threads and returns at once; :meth:`stop` is idempotent. Also usable
    as a context manager. ``config`` may be changed while the server runs.
    """

    def __init__(
        self, config: SandboxConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._config = config if config is not None else SandboxConfig()
        self._counters = Counters()
        self._images = ImageStore()
        self._callbacks = CallbackDispatcher(self._config, self._counters)
        self._engine = TaskEngine(self._config, self._images, self._counters, self._on_terminal)
        self._wave = WaveAPI(self._config, self._engine, self._counters, self._callbacks)
        self._wavespeed = WaveSpeedAPI(
            self._config, self._engine, self._images, self._counters, self._callbacks
        )
        self._fault_lock = threading.Lock()
        self._random = random.Random()
        self._routes = self._build_routes()
        self._httpd = _ThreadingServer((host, port), self)
        self._serve_thread: threading.Thread | None = None
        self._stop_lock = threading.Lock()
        self._stopped = threading.Event()

    # --- public handle ------------------------------------------------------------------

    @property
    def config(self) -> SandboxConfig:
        """The live knobs. Change attributes (``server.config.latency = 0.1``) or call
        ``config.update(...)``; the object itself cannot be replaced, since every part of
        the server holds this one instance."""
        return self._config

    @property
    def authority(self) -> str:
        """``host:port`` a client on this machine can use (an any-address bind becomes
        127.0.0.1)."""
        host, port = self._httpd.server_address[:2]
        host = str(host)
        try:
            if ipaddress.ip_address(host).is_unspecified:
                host = "127.0.0.1"
        except ValueError:
            pass  # a host name, used as is
        return f"{host}:{port}"

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8765`` (no trailing slash)."""
        return f"http://{self.authority}"

    @property
    def stats(self) -> dict[str, int]:
        """A snapshot of all counters plus ``active`` (tasks running), ``waiting`` (queued
        behind ``max_concurrency``), ``tasks`` (ever created) and ``peak_in_progress``."""
        return {**self._counters.snapshot(), **self._engine.counts()}

    @property
    def webhook_secret(self) -> str:
        """The ``whsec_...`` secret WaveSpeed webhooks are signed with."""
        return self.config.webhook_secret

    def start(self) -> SandboxServer:
        """Begin serving in the background; returns immediately (already listening)."""
        if self._stopped.is_set():
            raise RuntimeError("a stopped SandboxServer cannot be restarted")
        if self._serve_thread is None:
            self._engine.start()
            self._serve_thread = threading.Thread(
                target=self._httpd.serve_forever,
                # stop() wakes the loop at once; the tick only bounds the fallback.
                kwargs={"poll_interval": 0.05},
                name="imagen-sandbox-http",
                daemon=True,
            )
            self._serve_thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close open connections, stop the clock and pending callbacks."""
        with self._stop_lock:
            if self._stopped.is_set():
                return
            if self._serve_thread is not None:
                requester = threading.Thread(target=self._httpd.shutdown, daemon=True)
                requester.start()
                self._wake_serve_loop()
                requester.join(timeout=5)
                self._serve_thread.join(timeout=5)
            self._httpd.server_close()
            self._httpd.close_connections()
            self._engine.stop()
            self._callbacks.close()
            self._stopped.set()

    def _wake_serve_loop(self) -> None:
        # The serve loop notices a shutdown request only when its select() returns; a
        # throwaway connection makes that happen now instead of at the next poll tick.
        host, port = self.authority.rsplit(":", 1)
        with contextlib.suppress(OSError), socket.create_connection((host, int(port)), 0.5):
            pass

    def serve_forever(self) -> None:
        """Serve in the foreground until :meth:`stop` is called or KeyboardInterrupt."""
        self.start()
        try:
            while not self._stopped.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- request handling ---------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        """Route one request and return its answer (called on the connection's thread)."""
        allowed: set[str] = set()
        for route in self._routes:
            match = route.pattern.fullmatch(request.path)
            if match is None:
                continue
            if route.method != request.method:
                allowed.add(route.method)
                continue
            front = self._front(route.api)
            if front is not None:
                if not self._authorized(request):
                    self._counters.incr("unauthorized")
                    return front.unauthorized()
                if route.submit:
                    fault = self._take_submit_fault()
                    if fault == RATE_LIMIT:
                        self._counters.incr("rate_limited")
                        return front.rate_limited()
                    if fault == SERVER_ERROR:
                        self._counters.incr("server_errors")
                        return front.server_error()
                    if fault == UNAVAILABLE:
                        self._counters.incr("unavailable")
                        return front.unavailable()
                    try:
                        return route.handler(request, **match.groupdict())
                    except CapacityError as error:
                        self._counters.incr("over_capacity")
                        return front.over_capacity(error)
            return route.handler(request, **match.groupdict())
        if allowed:
            return json_response(
                405, {"error": "method not allowed"}, (("Allow", ", ".join(sorted(allowed))),)
            )
        return json_response(404, {"error": "not found"})

    def _build_routes(self) -> list[_Route]:
        def route(method: str, pattern: str, handler: Callable[..., Response], **kw: Any) -> _Route:
            return _Route(method, re.compile(pattern), handler, **kw)

        wave, wavespeed = self._wave, self._wavespeed
        return [
            route("POST", r"/v1/tasks", wave.submit, api=WAVE, submit=True),
            route("GET", r"/v1/tasks/(?P<task_id>[^/]+)", wave.status, api=WAVE),
            route("POST", r"/v1/tasks/(?P<task_id>[^/]+)/cancel", wave.cancel, api=WAVE),
            route("GET", r"/api/v3/webhook/secret", wavespeed.secret, api=WAVESPEED),
            route(
                "GET",
                r"/api/v3/predictions/(?P<prediction_id>[^/]+)(?:/result)?",
                wavespeed.result,
                api=WAVESPEED,
            ),
            # Model ids contain a slash (``google/imagen4``), hence ``.+``.
            route("POST", r"/api/v3/(?P<model>.+)", wavespeed.submit, api=WAVESPEED, submit=True),
            route("GET", r"/files/(?P<name>[^/]+)", self._file),
            route("GET", r"/healthz", self._health),
            # Control endpoints for a sandbox running in another process (CLI, demo).
            route("GET", r"/_sandbox/stats", self._stats_endpoint),
            route("GET", r"/_sandbox/config", self._config_endpoint),
            route("POST", r"/_sandbox/config", self._config_endpoint),
        ]

    def _front(self, api: str | None) -> _ApiFront | None:
        if api == WAVE:
            return self._wave
        if api == WAVESPEED:
            return self._wavespeed
        return None

    def _authorized(self, request: Request) -> bool:
        token = request.bearer_token()
        if token is None:
            return False
        expected = self.config.api_key
        return expected is None or hmac.compare_digest(token.encode(), expected.encode())

    def _take_submit_fault(self) -> str | None:
        config = self.config
        with self._fault_lock:
            if config.rate_limit_next > 0:
                config.rate_limit_next -= 1
                return RATE_LIMIT
            if config.server_error_next > 0:
                config.server_error_next -= 1
                return SERVER_ERROR
            if config.rate_limit_rate > 0 and self._random.random() < config.rate_limit_rate:
                return RATE_LIMIT
            if config.unavailable_rate > 0 and self._random.random() < config.unavailable_rate:
                return UNAVAILABLE
        return None

    def _on_terminal(self, task: Task) -> None:
        if task.api == WAVE:
            self._wave.on_terminal(task)
        elif task.api == WAVESPEED:
            self._wavespeed.on_terminal(task)

    def _file(self, request: Request, name: str) -> Response:
        found = self._images.content(name)
        if found is None:
            return json_response(404, {"error": "file not found"})
        self._counters.incr("downloads")
        data, content_type = found
        return Response(
            200, data, content_type, headers=(("Cache-Control", "public, max-age=86400"),)
        )

    def _health(self, request: Request) -> Response:
        return json_response(200, {"ok": True})

    def _stats_endpoint(self, request: Request) -> Response:
        return json_response(200, self.stats)

    def _config_endpoint(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                changes = request.json()
            except ValueError:
                return json_response(400, {"error": "body is not valid JSON"})
            if not isinstance(changes, dict):
                return json_response(400, {"error": "body must be a JSON object"})
            if SECRET_FIELDS & set(changes):
                return json_response(400, {"error": "secrets cannot be changed over HTTP"})
            try:
                self.config.update(**changes)
            except (TypeError, ValueError) as error:
                return json_response(400, {"error": str(error)})
        return json_response(200, self.config.public_dict())
