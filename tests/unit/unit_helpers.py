"""Shared pieces of the unit tests: settings, a strict fake HTTP server, images, factories.

Everything here is hermetic: the fake HTTP server answers only what a test told it to
expect and fails the test (loudly, even if the code under test swallows the error) on any
other request.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import httpx
from PIL import Image

from imagen_assets.models import Campaign, GeneratedImage, GenerationTask
from tests.mock_http import MockHTTP, fixture, json_response

__all__ = ["MockHTTP", "fixture", "json_response"]  # the unit tests import them from here

WAVE_KEY = "wave-unit-key-7c1e0b"
WS_KEY = "ws-unit-key-93fa1d"
WS_SECRET = "whsec_unit-secret-0b9f27c4e1d8a6"
WAVE_BASE = "https://wave.test"
WS_BASE = "https://ws.test"
CDN_HOST = "cdn.test"
CDN_ADDRESS = "10.0.0.7"  # private on purpose: cdn.test is allow-listed

WAVE_BACKEND = "imagen_assets.providers.wave.WaveProvider"
WS_BACKEND = "imagen_assets.providers.wavespeed.WaveSpeedProvider"


def imagen_settings(**overrides: Any) -> dict[str, Any]:
    """The IMAGEN_ASSETS every unit test starts from (both real providers, no webhooks)."""
    config: dict[str, Any] = {
        "DEFAULT_PROVIDER": "wavespeed",
        "PROVIDERS": {
            "wave": {
                "BACKEND": WAVE_BACKEND,
                "OPTIONS": {
                    "API_KEY": WAVE_KEY,
                    "BASE_URL": WAVE_BASE,
                    "RESULT_HOSTS": [CDN_HOST],
                },
            },
            "wavespeed": {
                "BACKEND": WS_BACKEND,
                "OPTIONS": {
                    "API_KEY": WS_KEY,
                    "BASE_URL": WS_BASE,
                    "WEBHOOK_SECRET": WS_SECRET,
                    "RESULT_HOSTS": [CDN_HOST],
                },
            },
        },
        "WEBHOOK_BASE_URL": None,
        # One thread: a unit test's rows are in its transaction, which other threads'
        # connections cannot see (threads: tests/integration, the benchmarks).
        "JOB_THREADS": 1,
        "DOWNLOAD_ALLOW_HOSTS": [CDN_HOST],
        "SITE_URL": "https://marketing.example.com",
    }
    config.update(overrides)
    return config


# -- a fake CDN for downloads ----------------------------------------------------------------


@dataclass
class FakeCDN:
    """Serves ``files`` (path -> bytes) on cdn.test; any other request fails the test."""

    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    status: dict[str, int] = field(default_factory=dict)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if request.headers.get("host") != CDN_HOST or path not in self.files:
            message = f"unexpected download: {request.url} (Host {request.headers.get('host')})"
            self.failures.append(message)
            raise AssertionError(message)
        code = self.status.get(path, 200)
        return httpx.Response(code, content=self.files[path], headers={"Content-Type": "image/png"})

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def url(self, path: str) -> str:
        return f"https://{CDN_HOST}{path}"


# -- images ----------------------------------------------------------------------------------


def image_bytes(fmt: str, size: tuple[int, int] = (64, 48), mode: str = "RGB") -> bytes:
    """A small, noisy image (noise so that truncating it really damages it)."""
    noise = Image.effect_noise(size, 64).convert(mode)
    buffer = io.BytesIO()
    noise.save(buffer, fmt)
    return buffer.getvalue()


# -- factories -------------------------------------------------------------------------------


def make_campaign(slug: str = "spring", **fields: Any) -> Campaign:
    return Campaign.objects.create(name=slug.title(), slug=slug, **fields)


def make_task(
    campaign: Campaign,
    *,
    provider: str = "wavespeed",
    num_images: int = 1,
    status: str = "queued",
    provider_task_id: str = "",
    image_status: str | None = None,
    **fields: Any,
) -> GenerationTask:
    """A task and its image rows, as request_images would have left them (or further on)."""
    fields.setdefault("estimated_cost", "0.04" if provider == "wavespeed" else "0.0425")
    task = GenerationTask.objects.create(
        campaign=campaign,
        provider=provider,
        model="wavespeed-ai/imagen4" if provider == "wavespeed" else "imagen-4.0",
        prompt="a red bicycle",
        aspect_ratio="1:1",
        num_images=num_images,
        status=status,
        provider_task_id=provider_task_id,
        **fields,
    )
    for index in range(num_images):
        GeneratedImage.objects.create(
            task=task,
            campaign=campaign,
            index=index,
            status=image_status or GeneratedImage.Status.QUEUED,
        )
    return task
