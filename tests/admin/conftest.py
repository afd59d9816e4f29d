"""Fixtures for the admin tests: users with given permissions, campaigns, images with files."""

from __future__ import annotations

import copy
import io
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.core.files.base import ContentFile
from PIL import Image

from imagen_assets.models import Campaign, GeneratedImage, GenerationTask


@pytest.fixture
def media(settings: Any, tmp_path: Any) -> Any:
    settings.MEDIA_ROOT = str(tmp_path)
    return tmp_path


@pytest.fixture
def priced(settings: Any) -> dict[str, Any]:
    """The site's providers plus paid ones: WaveSpeed at $0.04 and Wave at $0.0425 per image."""
    config = copy.deepcopy(settings.IMAGEN_ASSETS)
    config["PROVIDERS"]["wavespeed"] = {
        "BACKEND": "imagen_assets.providers.wavespeed.WaveSpeedProvider",
        "OPTIONS": {"API_KEY": "k", "PRICE_PER_IMAGE": "0.04"},
    }
    config["PROVIDERS"]["wave"] = {
        "BACKEND": "imagen_assets.providers.wave.WaveProvider",
        "OPTIONS": {"API_KEY": "k", "PRICE_PER_IMAGE": "0.0425"},
    }
    config["DEFAULT_PROVIDER"] = "sandbox"
    settings.IMAGEN_ASSETS = config
    return config


@pytest.fixture
def staff_user(django_user_model: Any) -> Callable[..., Any]:
    """A staff user holding exactly the given imagen_assets permission codenames."""

    def make(*codenames: str, username: str = "marketer") -> Any:
        user = django_user_model.objects.create_user(
            username=username, password="pw", is_staff=True
        )
        for codename in codenames:
            user.user_permissions.add(
                Permission.objects.get(content_type__app_label="imagen_assets", codename=codename)
            )
        return django_user_model.objects.get(pk=user.pk)

    return make


@pytest.fixture
def campaign() -> Campaign:
    return Campaign.objects.create(
        name="Spring launch",
        slug="spring-launch",
        brand_prompt="Pastel palette, soft daylight.",
        budget=Decimal("50.00"),
    )


def png_bytes(width: int = 48, height: int = 32, color: str = "teal") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def make_task() -> Callable[..., GenerationTask]:
    def make(campaign: Campaign, **fields: Any) -> GenerationTask:
        defaults: dict[str, Any] = {
            "provider": "sandbox",
            "model": "wavespeed-ai/imagen4",
            "prompt": "A red bicycle by the sea\n\nPastel palette, soft daylight.",
            "aspect_ratio": "1:1",
            "num_images": 1,
            "status": "succeeded",
            "request_body": {"prompt": "A red bicycle by the sea", "aspect_ratio": "1:1"},
        }
        defaults.update(fields)
        return GenerationTask.objects.create(campaign=campaign, **defaults)

    return make


@pytest.fixture
def make_image(make_task: Callable[..., GenerationTask]) -> Callable[..., GeneratedImage]:
    """An image row; ``with_file=True`` stores a real small PNG and its thumbnail."""

    def make(
        campaign: Campaign,
        *,
        status: str = GeneratedImage.Status.SUCCEEDED,
        with_file: bool = False,
        task: GenerationTask | None = None,
        index: int = 0,
        **fields: Any,
    ) -> GeneratedImage:
        if task is None:
            task_status = {"queued": "queued", "processing": "processing"}.get(
                status, "failed" if status in ("failed", "filtered") else status
            )
            task = make_task(campaign, status=task_status)
        image = GeneratedImage(task=task, campaign=campaign, index=index, status=status, **fields)
        if with_file:
            data = png_bytes()
            image.file.save(f"image-{task.pk}-{index}.png", ContentFile(data), save=False)
            image.thumbnail.save(
                f"thumb-{task.pk}-{index}.png", ContentFile(png_bytes(24, 16)), save=False
            )
            image.bytes = len(data)
            image.content_type = "image/png"
            image.sha256 = "ab" * 32
        image.save()
        return image

    return make
