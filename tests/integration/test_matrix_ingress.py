"""The webhook endpoint over real HTTP (docs/reliability.md W8, W14).

The live Django server receives the requests; Redis is the session's real redis-server (or,
for W14, a socket with nothing listening); the worker is a real ``rqworker``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.utils import timezone
from PIL import Image

from campaigns.settings import imagen_files_root
from imagen_assets import jobs
from imagen_assets.models import Campaign, GeneratedImage, WebhookEvent
from tests.factories import running_wavespeed_task, signed_wavespeed_headers, wait_all_finished
from tests.loopback import LoopbackServer

pytestmark = [pytest.mark.integration]

URL = "/imagen/webhooks/wavespeed/"


@pytest.fixture
def campaign(stack_env: dict[str, str]) -> Campaign:
    return Campaign.objects.create(name="Ingress", slug="ingress")


@pytest.fixture
def signed(settings: Any, sandbox: Any) -> str:
    """The live server verifies with the sandbox's secret; returns it."""
    settings.IMAGEN_ASSETS["PROVIDERS"]["wavespeed"]["OPTIONS"]["WEBHOOK_SECRET"] = (
        sandbox.webhook_secret
    )
    return str(sandbox.webhook_secret)


class PNGServer(LoopbackServer):
    """A loopback file server with one PNG; counts the downloads."""

    def __init__(self) -> None:
        buffer = io.BytesIO()
        Image.new("RGB", (40, 30), (0, 90, 160)).save(buffer, "PNG")
        body = buffer.getvalue()
        super().__init__(lambda path: (200, "image/png", body))
        self.url += "/out.png"


@pytest.fixture
def png_server() -> Iterator[PNGServer]:
    server = PNGServer()
    yield server
    server.close()


# -- W8: oversized bodies --------------------------------------------------------------------

FIVE_MB = 5 * 1024 * 1024


def raw_post(address: tuple[str, int], head: bytes, body_chunks: Iterator[bytes]) -> bytes:
    """Send a request by hand (so Content-Length can be left out or made up) and return
    what the server answered before it closed the connection or a few seconds passed."""
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(head)
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
        except OSError:
            pass  # the server answered and hung up before reading it all: what we want
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
    return answer


def five_mb() -> Iterator[bytes]:
    block = b"x" * 65536
    for _ in range(FIVE_MB // len(block)):
        yield block


class OversizedBodyTests:
    def test_a_5_mb_body_with_content_length_is_a_413_and_records_nothing(
        self, live_server: Any, signed: str
    ) -> None:
        """W8. Refused on the declared length, before the body is read or verified."""
        response = httpx.post(
            f"{live_server.url}{URL}",
            content=b"{" + b" " * (FIVE_MB - 2) + b"}",
            headers=signed_wavespeed_headers(signed, "evt-big", b"{}"),
            timeout=30,
        )
        assert response.status_code == 413
        assert not WebhookEvent.objects.exists()

    def test_a_5_mb_body_without_content_length_is_refused_and_records_nothing(
        self, live_server: Any, signed: str
    ) -> None:
        """W8. No Content-Length, a close-delimited 5 MB body: a 4xx, nothing stored."""
        host, port = live_server.url.removeprefix("http://").split(":")
        headers = signed_wavespeed_headers(signed, "evt-big-2", b"{}")
        head = (
            f"POST {URL} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            + "\r\n"
        ).encode()

        answer = raw_post((host, int(port)), head, five_mb())

        status = int(answer.split(b" ", 2)[1])
        assert 400 <= status < 500, answer[:200]
        assert not WebhookEvent.objects.exists()

    def test_a_chunked_5_mb_body_is_refused_and_records_nothing(
        self, live_server: Any, signed: str
    ) -> None:
        """W8. Transfer-Encoding: chunked, 5 MB: a 4xx, nothing stored."""
        host, port = live_server.url.removeprefix("http://").split(":")
        headers = signed_wavespeed_headers(signed, "evt-big-3", b"{}")
        head = (
            f"POST {URL} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
            "Transfer-Encoding: chunked\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            + "\r\n"
        ).encode()

        def chunked() -> Iterator[bytes]:
            for block in five_mb():
                yield b"%x\r\n" % len(block) + block + b"\r\n"
            yield b"0\r\n\r\n"

        answer = raw_post((host, int(port)), head, chunked())

        status = int(answer.split(b" ", 2)[1])
        assert 400 <= status < 500, answer[:200]
        assert not WebhookEvent.objects.exists()


# -- W14: Redis down when a webhook arrives --------------------------------------------------


class RedisDownWebhookTests:
    def test_the_event_is_committed_answered_200_and_processed_once_after_the_reconciler(
        self,
        campaign: Campaign,
        live_server: Any,
        signed: str,
        settings: Any,
        tmp_path: Path,
        stack_env: dict[str, str],
        png_server: PNGServer,
        start_worker: Any,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """W14. With Redis unreachable from the web process, a valid webhook is still
        recorded and answered 200; nothing processes it until Redis is back and the
        reconciler queues it; then a real worker processes it once."""
        caplog.set_level(logging.INFO, logger="imagen_assets")
        start_worker()  # on the real Redis; it gets nothing until the reconciler runs
        # A read is scheduled far ahead, so only the webhook can finish this task.
        task = running_wavespeed_task(
            campaign, "w14-task", next_poll_at=timezone.now() + timedelta(hours=1)
        )
        body = json.dumps(
            {
                "id": "w14-task",
                "status": "completed",
                "outputs": [png_server.url],
                "has_nsfw_contents": [False],
                "error": "",
                "model": "wavespeed-ai/imagen4",
            }
        ).encode()
        working = settings.RQ_QUEUES
        settings.RQ_QUEUES = {
            "default": {"URL": f"unix://{tmp_path / 'no-redis.sock'}?db=0", "DEFAULT_TIMEOUT": 300}
        }

        response = httpx.post(
            f"{live_server.url}{URL}",
            content=body,
            headers=signed_wavespeed_headers(signed, "evt-w14", body),
            timeout=30,
        )

        assert response.status_code == 200, response.text
        event = WebhookEvent.objects.get(event_id="evt-w14")
        assert event.processed_at is None
        assert "the reconciler will pick it up" in caplog.text
        time.sleep(1)  # a worker that somehow got it would have started by now
        event.refresh_from_db()
        assert event.processed_at is None
        assert png_server.hits == 0
        assert GeneratedImage.objects.get(task=task).status == GeneratedImage.Status.QUEUED

        settings.RQ_QUEUES = working
        settings.IMAGEN_ASSETS["RECONCILE_AFTER"] = 0
        counts = jobs.reconcile()
        assert counts == {"submit": 0, "poll": 0, "complete": 0, "webhook": 1, "sweep": 0}, counts

        [image] = wait_all_finished([task], timeout=30)
        assert image.status == GeneratedImage.Status.SUCCEEDED, image.error_message
        event.refresh_from_db()
        assert event.processed_at is not None
        assert event.outcome == "applied succeeded; stored 1, withheld 0"
        assert png_server.hits == 1
        root = Path(imagen_files_root(stack_env))
        originals = [p for p in root.rglob("*") if p.is_file() and p.parent.name != "thumbs"]
        assert len(originals) == 1
        assert jobs.reconcile()["webhook"] == 0
