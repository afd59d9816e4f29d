"""Calls to the provider API against real loopback servers: the total deadline of a call
(docs/reliability.md P5), and the circuit breaker and refused key with a worker (P7, P4).

For P5, a server that trickles its answer a few bytes at a time answers every read well within the
per-phase read timeout; only the total deadline of a call stops it. The servers here send a
complete, valid answer in the end (after several seconds), so without the deadline the
calls succeed and these tests fail instead of hanging.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from imagen_assets import breaker, services
from imagen_assets.downloads import DownloadError, download
from imagen_assets.hosts import ResultHosts
from imagen_assets.models import Campaign, GenerationTask, ProviderHealth
from imagen_assets.providers import GenerationParams, Provider, ProviderError
from imagen_assets.providers.wave import WaveProvider
from imagen_assets.providers.wavespeed import WaveSpeedProvider
from imagen_assets.sandbox import SandboxConfig, SandboxServer
from imagen_assets.status import BreakerState, TaskStatus
from tests.conftest import apply_env_settings, wait_for
from tests.factories import wait_all_finished
from tests.integration.test_concurrency import at_once

pytestmark = [pytest.mark.integration]

PARAMS = GenerationParams(prompt="A lighthouse at dusk", aspect_ratio="1:1", num_images=1)
# Bytes per write and the pause between writes: a whole answer takes several seconds,
# while each read returns well within the read timeout.
DRIP_BYTES = 4
DRIP_PAUSE = 0.1


class DripServer:
    """A loopback HTTP/1.1 server that answers every request correctly, but slowly: the
    status line and headers (``drip="headers"``) or only the body (``drip="body"``) arrive
    :data:`DRIP_BYTES` at a time. Counts requests and notes when each client hung up."""

    def __init__(self, body: dict[str, Any], *, drip: str) -> None:
        # Padded (JSON allows trailing blanks) so that the dripped part takes seconds.
        self.body = json.dumps(body).encode() + b" " * 200
        self.drip = drip
        self.requests = 0
        self.hung_up = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.stopping = False

    def __enter__(self) -> DripServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping = True
        self.thread.join(10)
        self.listener.close()

    def serve(self) -> None:
        self.listener.settimeout(0.1)  # so that stopping is noticed
        while not self.stopping:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            threading.Thread(target=self.answer, args=(conn,), daemon=True).start()

    def answer(self, conn: socket.socket) -> None:
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                request += chunk
            head, _, rest = request.partition(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            while len(rest) < length:
                rest += conn.recv(65536)
            self.requests += 1
            headers = self.head()
            try:
                if self.drip == "headers":
                    self.trickle(conn, headers)
                    conn.sendall(self.body)
                else:
                    conn.sendall(headers)
                    self.trickle(conn, self.body)
            except OSError:
                self.hung_up += 1

    def head(self) -> bytes:
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"X-Padding: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
            % (b"x" * 200, len(self.body))
        )

    def trickle(self, conn: socket.socket, data: bytes) -> None:
        for start in range(0, len(data), DRIP_BYTES):
            conn.sendall(data[start : start + DRIP_BYTES])
            time.sleep(DRIP_PAUSE)


WAVE_TASK = {"task_id": "task_drip", "status": "queued", "progress": 0}
WAVESPEED_TASK = {
    "code": 200,
    "message": "success",
    "data": {"id": "pred_drip", "status": "created", "outputs": [], "error": ""},
}


def slow_answer_seconds(server: DripServer) -> float:
    """How long the server takes to send the part of its answer it drips."""
    dripped = server.head() if server.drip == "headers" else server.body
    return len(dripped) / DRIP_BYTES * DRIP_PAUSE


@pytest.fixture(params=["headers", "body"])
def drip(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def provider(cls: type[Provider], url: str) -> Provider:
    # The per-phase timeout is long enough for every single read; the deadline is not.
    return cls("p5", {"API_KEY": "sk-drip-secret", "BASE_URL": url, "TIMEOUT": 3, "DEADLINE": 1})


class SlowDripTests:
    @pytest.mark.parametrize(
        ("cls", "answer"), [(WaveProvider, WAVE_TASK), (WaveSpeedProvider, WAVESPEED_TASK)]
    )
    def test_a_dripping_submit_is_cut_off_by_the_deadline(
        self, drip: str, cls: type[Provider], answer: dict[str, Any]
    ) -> None:
        with DripServer(answer, drip=drip) as server, provider(cls, server.url) as client:
            assert slow_answer_seconds(server) > 5 * client.deadline  # each read is quick

            with pytest.raises(ProviderError) as caught:
                client.submit(PARAMS, idempotency_key="0f0e0d0c-drip")

        error = caught.value
        assert server.requests == 1
        assert "within 1 s" in str(error)
        assert "deadline" in str(error)
        assert error.retryable
        # The request was sent: whether the provider acted on it is unknown.
        assert error.ambiguous
        assert "sk-drip-secret" not in str(error)

    @pytest.mark.parametrize(
        ("cls", "answer", "task_id"),
        [(WaveProvider, WAVE_TASK, "task_drip"), (WaveSpeedProvider, WAVESPEED_TASK, "pred_drip")],
    )
    def test_a_dripping_status_read_is_cut_off_by_the_deadline(
        self, drip: str, cls: type[Provider], answer: dict[str, Any], task_id: str
    ) -> None:
        with (
            DripServer(answer, drip=drip) as server,
            provider(cls, server.url) as client,
            pytest.raises(ProviderError) as caught,
        ):
            client.fetch(task_id)

        assert "deadline" in str(caught.value)
        assert caught.value.retryable

    def test_an_answer_within_the_deadline_is_read(self) -> None:
        with (
            DripServer(WAVE_TASK, drip="body") as server,
            WaveProvider(
                "p5", {"API_KEY": "k", "BASE_URL": server.url, "TIMEOUT": 3, "DEADLINE": 30}
            ) as client,
        ):
            task = client.fetch("task_drip")

        assert task.task_id == "task_drip"

    def test_the_next_call_on_the_same_client_gets_a_deadline_of_its_own(self) -> None:
        with DripServer(WAVE_TASK, drip="headers") as server:
            client = WaveProvider(
                "p5", {"API_KEY": "k", "BASE_URL": server.url, "TIMEOUT": 3, "DEADLINE": 1}
            )
            with client:
                for _ in range(2):
                    with pytest.raises(ProviderError, match="deadline"):
                        client.fetch("task_drip")
        assert server.requests == 2


# -- the circuit breaker with real parts (P7, P4) ---------------------------------------------


@pytest.fixture
def free_port() -> int:
    """A loopback port nothing listens on (yet): connecting to it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def down_then_up(free_port: int) -> Iterator[Callable[[], SandboxServer]]:
    """``up()`` starts a sandbox on :func:`free_port`; until then the provider is down."""
    started: list[SandboxServer] = []

    def up() -> SandboxServer:
        server = SandboxServer(SandboxConfig(latency=0.3), host="127.0.0.1", port=free_port)
        server.start()
        started.append(server)
        return server

    yield up
    for server in started:
        server.stop()


class BreakerStackTests:
    """A worker process, Redis, the database and a provider that is down, then back."""

    def test_jobs_wait_while_the_provider_is_down_and_finish_once_it_is_back(
        self,
        stack_env: dict[str, str],
        settings: Any,
        free_port: int,
        down_then_up: Callable[[], SandboxServer],
        start_worker: Callable[..., Any],
    ) -> None:
        env = {
            **stack_env,
            "IMAGEN_SANDBOX_URL": f"http://127.0.0.1:{free_port}",
            "IMAGEN_BREAKER_THRESHOLD": "2",
            "IMAGEN_BREAKER_COOLDOWN": "3",
        }
        apply_env_settings(settings, env)
        start_worker(env)
        campaign = Campaign.objects.create(name="Outage", slug="outage")

        tasks = services.request_images(campaign=campaign, prompt="Harbour at night", count=12)

        assert len(tasks) == 3
        health = wait_for(
            lambda: ProviderHealth.objects.filter(
                provider="sandbox", state=BreakerState.OPEN
            ).first(),
            30,
            "the breaker to open",
        )
        assert health.failures >= 2
        assert "could not connect" in health.last_error
        # Jobs wait instead of failing; the last task never spent an attempt on the outage.
        wait_for(
            lambda: GenerationTask.objects.filter(
                pk__in=[t.pk for t in tasks], error_message__contains="is not answering since"
            ).exists(),
            30,
            "a task to wait for the provider",
        )
        assert (
            not GenerationTask.objects.filter(pk__in=[t.pk for t in tasks])
            .exclude(status=TaskStatus.QUEUED)
            .exists()
        )

        server = down_then_up()

        images = wait_all_finished(tasks, timeout=60)
        assert [image.status for image in images] == ["succeeded"] * 12
        assert server.stats["wavespeed_submits"] == 3  # each task submitted once
        health = ProviderHealth.objects.get(provider="sandbox")
        assert (health.state, health.failures) == (BreakerState.CLOSED, 0)
        # The outage spent at most the attempts that opened the breaker and its probes.
        attempts = GenerationTask.objects.filter(pk__in=[t.pk for t in tasks])
        assert max(attempts.values_list("attempts", flat=True)) < 6

    def test_a_refused_key_fails_the_task_once_with_a_configuration_alert(
        self,
        stack_env: dict[str, str],
        sandbox: Any,
        worker: Any,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        sandbox.config.api_key = "the-only-key-the-sandbox-takes"  # ours is refused: 401
        campaign = Campaign.objects.create(name="Wrong key", slug="wrong-key")

        tasks = services.request_images(
            campaign=campaign, prompt="Lanterns", count=2, provider="wavespeed"
        )

        images = wait_all_finished(tasks, timeout=30)
        assert {image.status for image in images} == {"failed"}
        task = GenerationTask.objects.get(pk=tasks[0].pk)
        assert task.error_message.startswith(
            "WaveSpeed AI refused the API key (HTTP 401): check "
            "IMAGEN_ASSETS['PROVIDERS']['wavespeed']['OPTIONS']['API_KEY']."
        )
        assert task.attempts == 1  # not retried
        assert stack_env["IMAGEN_WAVESPEED_API_KEY"] not in task.error_message
        health = ProviderHealth.objects.get(provider="wavespeed")
        assert health.key_refused_at is not None
        assert health.state == BreakerState.CLOSED


@pytest.mark.postgres
class BreakerConcurrencyTests:
    """Many workers reporting at once: every failure counted, the breaker opened once, and
    exactly one probe after the cool-down (row locks and guarded updates; PostgreSQL)."""

    @pytest.fixture(autouse=True)
    def _postgresql_only(self, transactional_db: None, settings: Any) -> None:
        if connection.vendor != "postgresql":
            pytest.skip(
                f"row locks need PostgreSQL, the database is {connection.vendor}: "
                "run `make test-postgres`"
            )
        settings.IMAGEN_ASSETS = {
            **settings.IMAGEN_ASSETS,
            "BREAKER_THRESHOLD": 5,
            "BREAKER_COOLDOWN": 60,
        }

    def test_concurrent_failures_are_all_counted_and_open_it_once(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        error = ProviderError("Wave", "could not connect (ConnectError)", retryable=True)

        with caplog.at_level(logging.WARNING, logger="imagen_assets.breaker"):
            results = at_once([lambda: breaker.failed("wave", error)] * 8)

        assert not [r for r in results if isinstance(r, Exception)], results
        health = ProviderHealth.objects.get(provider="wave")
        assert (health.state, health.failures) == (BreakerState.OPEN, 8)
        opened = [r for r in caplog.records if "is not answering" in r.getMessage()]
        assert len(opened) == 1

    def test_after_the_cool_down_exactly_one_of_many_callers_probes(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Every caller reads the open breaker before any of them claims the probe: the
        # claim alone must let exactly one through.
        all_read = threading.Barrier(8)
        read = breaker._health

        def read_then_wait(alias: str) -> Any:
            health = read(alias)
            all_read.wait(10)
            return health

        monkeypatch.setattr(breaker, "_health", read_then_wait)
        now = timezone.now()
        ProviderHealth.objects.create(
            provider="wave",
            state=BreakerState.OPEN,
            failures=5,
            failing_since=now - timedelta(minutes=5),
            retry_at=now - timedelta(seconds=1),
        )

        results = at_once([lambda: breaker.admit("wave", "Wave", probe_seconds=90)] * 8)

        assert not [r for r in results if isinstance(r, Exception)], results
        assert sum(result is None for result in results) == 1
        assert ProviderHealth.objects.get(provider="wave").state == BreakerState.HALF_OPEN


class DownloadDripTests:
    """D10, P5 for the result download: a host dripping its status line and headers cannot
    hold the download past ``timeout``, although each read returns quickly."""

    def test_a_host_dripping_its_headers_is_cut_off_at_the_timeout(self) -> None:
        with DripServer(WAVE_TASK, drip="headers") as server:
            assert slow_answer_seconds(server) > 5  # five times the download's timeout

            with pytest.raises(DownloadError) as caught:
                download(
                    server.url + "/out.png",
                    max_bytes=10**6,
                    timeout=1.0,
                    hosts=ResultHosts.of(["127.0.0.1"], "RESULT_HOSTS"),
                    allow_hosts=["127.0.0.1"],
                )

            assert caught.value.transient
            # The client hung up while the headers were still dripping (without the
            # deadline it would have read them all and the server never sees a hang-up).
            wait_for(lambda: server.hung_up == 1, timeout=slow_answer_seconds(server) + 5)
