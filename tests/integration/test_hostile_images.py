"""Hostile and flaky result files through the real pipeline: a signed webhook to the live
server, a real RQ worker, downloads over real HTTP from a loopback file server.

I5: what is stored is a clean copy (its pixels and the app's provenance XMP, nothing after
the end marker), named by its own hash, with the served file's hash and C2PA flag beside it.
I6: animations are refused. D9, D10: a result host answering 503 or 429 is tried again and
the image stored; an expired URL fails at once.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from campaigns.settings import imagen_files_root
from imagen_assets.imaging import Provenance, provenance_xmp
from imagen_assets.models import Campaign, GeneratedImage, GenerationTask
from imagen_assets.providers import get_provider_class
from tests import hostile_images as hostile
from tests.factories import running_wavespeed_task, signed_wavespeed_headers, wait_all_finished

pytestmark = [pytest.mark.integration]


@dataclass
class FileHost:
    """A loopback result host: ``files`` by path, each answered after the statuses queued
    for it in ``before`` (e.g. two 503s); counts every GET."""

    url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    before: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    gets: Counter[str] = field(default_factory=Counter)


@pytest.fixture
def file_host() -> Iterator[FileHost]:
    host = FileHost()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with lock:
                host.gets[self.path] += 1
                queued = host.before.get(self.path, [])
                status, headers = queued.pop(0) if queued else (200, {})
            body = host.files.get(self.path) if status == 200 else b"<Error>busy</Error>"
            if body is None:
                status, body = 404, b"<Error><Code>NoSuchKey</Code></Error>"
            self.send_response(status)
            self.send_header("Content-Type", "image/png" if status == 200 else "text/xml")
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield host
    server.shutdown()
    server.server_close()


@pytest.fixture
def campaign(stack_env: dict[str, str]) -> Campaign:
    return Campaign.objects.create(name="Hostile files", slug="hostile-files")


@pytest.fixture
def finish_with(
    campaign: Campaign, sandbox: Any, settings: Any, live_server: Any, file_host: FileHost
) -> Callable[[str, list[str]], list[GeneratedImage]]:
    """``finish_with(task_id, paths)``: a WaveSpeed task whose signed "completed" webhook
    names those paths on the file host; returns its images once all are finished."""
    settings.IMAGEN_ASSETS["PROVIDERS"]["wavespeed"]["OPTIONS"]["WEBHOOK_SECRET"] = (
        sandbox.webhook_secret
    )

    def run(task_id: str, paths: list[str]) -> list[GeneratedImage]:
        task = running_wavespeed_task(
            campaign, task_id, num_images=len(paths), estimated_cost="0.04"
        )
        body = json.dumps(
            {
                "id": task_id,
                "status": "completed",
                "outputs": [file_host.url + path for path in paths],
                "has_nsfw_contents": [False] * len(paths),
                "error": "",
                "model": "wavespeed-ai/imagen4",
            }
        ).encode()
        response = httpx.post(
            f"{live_server.url}/imagen/webhooks/wavespeed/",
            content=body,
            headers=signed_wavespeed_headers(sandbox.webhook_secret, f"evt-{task_id}", body),
        )
        assert response.status_code == 200
        return wait_all_finished([task], timeout=60)

    return run


def stored_bytes(image: GeneratedImage) -> bytes:
    with image.file.open("rb") as handle:
        return handle.read()


def stored_originals(env: dict[str, str]) -> list[Path]:
    root = Path(imagen_files_root(env))
    return [p for p in root.rglob("*") if p.is_file() and p.parent.name != "thumbs"]


class HostileFileTests:
    def test_hostile_files_are_stored_clean_and_animations_refused(
        self,
        finish_with: Callable[[str, list[str]], list[GeneratedImage]],
        file_host: FileHost,
        stack_env: dict[str, str],
        worker: Any,
    ) -> None:
        served = {
            "/exif-gps-comment-xmp-icc-c2pa-appended.jpg": hostile.hostile_jpeg(c2pa=True),
            "/script-chunks-c2pa-appended.png": hostile.hostile_png(),
            "/metadata-c2pa-appended.webp": hostile.hostile_webp(),
            "/exif-gps-comment-xmp-icc-appended.jpg": hostile.hostile_jpeg(),
            "/lossless-metadata-c2pa.webp": hostile.hostile_webp(lossless=True),
            "/300-frames.webp": hostile.animated("WEBP", frames=300),
            "/300-frames.png": hostile.animated("PNG", frames=300),
            "/animated.gif": hostile.animated("GIF", frames=300),
        }
        file_host.files.update(served)
        paths = list(served)
        # complete() stores up to four files of a task at once: two tasks of four.
        images = finish_with("hostile-1", paths[:4]) + finish_with("hostile-2", paths[4:])

        task = GenerationTask.objects.get(provider_task_id="hostile-1")
        provider = get_provider_class("wavespeed").display_name
        expected_xmp = provenance_xmp(Provenance(model=task.model, provider=provider))
        stored, refused = images[:5], images[5:]
        for image, path in zip(stored, paths[:5], strict=True):
            assert image.status == GeneratedImage.Status.SUCCEEDED, (path, image.error_message)
            clean = stored_bytes(image)
            hostile.assert_clean(clean, expected_xmp)
            assert image.sha256 == hashlib.sha256(clean).hexdigest()
            assert image.sha256[:12] in image.file.name
            assert image.served_sha256 == hashlib.sha256(served[path]).hexdigest()
            assert image.bytes == len(clean)
            assert (image.width, image.height) == (320, 240)
            assert image.provider_c2pa is ("c2pa" in path), path
        for image in refused[:2]:
            assert image.status == GeneratedImage.Status.FAILED
            assert "animated or multi-frame images are not accepted (300 frames)" in (
                image.error_message
            )
        assert "not a JPEG, PNG or WebP image" in refused[2].error_message
        assert all(not image.file and not image.served_sha256 for image in refused)
        assert len(stored_originals(stack_env)) == 5
        assert all(count == 1 for count in file_host.gets.values())
        assert worker.alive()


class FlakyHostTests:
    def test_a_host_answering_503_twice_then_the_image_is_stored(
        self,
        finish_with: Callable[[str, list[str]], list[GeneratedImage]],
        file_host: FileHost,
        worker: Any,
    ) -> None:
        file_host.files["/busy.png"] = hostile.hostile_png("RGB")
        file_host.before["/busy.png"] = [(503, {}), (503, {})]
        file_host.files["/limited.png"] = hostile.hostile_png("RGB")
        file_host.before["/limited.png"] = [(429, {"Retry-After": "1"})]

        busy, limited = finish_with("flaky-1", ["/busy.png", "/limited.png"])

        assert busy.status == GeneratedImage.Status.SUCCEEDED, busy.error_message
        assert limited.status == GeneratedImage.Status.SUCCEEDED, limited.error_message
        assert file_host.gets["/busy.png"] == 3
        assert file_host.gets["/limited.png"] == 2

    def test_an_expired_result_url_fails_after_one_get(
        self,
        finish_with: Callable[[str, list[str]], list[GeneratedImage]],
        file_host: FileHost,
        worker: Any,
    ) -> None:
        (gone,) = finish_with("expired-1", ["/gone.png"])

        assert gone.status == GeneratedImage.Status.FAILED
        assert gone.error_message == (
            "Could not store the image: 127.0.0.1 answered HTTP 404: the result URL expired"
        )
        assert file_host.gets["/gone.png"] == 1
