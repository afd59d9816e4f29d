"""Provider-supplied file names are never used (docs/reliability.md I7).

The output URLs name their files with ``../``, a very long name and extensions that do not
match the bytes; the stored key is always ``<prefix>/<campaign>/<task>-<index>-<sha256
prefix>-<random>.<extension of the detected format>``.
"""

from __future__ import annotations

import re

import httpx
import pytest
from django.core.files.storage import default_storage
from unit_helpers import FakeCDN, image_bytes, make_campaign, make_task

from imagen_assets import jobs
from imagen_assets.models import GeneratedImage

pytestmark = pytest.mark.django_db

HOSTILE_PATHS = [
    "/%2e%2e%2f%2e%2e%2fetc%2fpasswd.png",
    "/..%2f..%2fsettings.py",
    "/" + "n" * 400 + ".png",
    "/photo.exe",
    "/photo.svg",
    "/photo.jpg",
    "/dir/.htaccess",
    "/name%00.php",
]


def test_the_stored_keys_ignore_the_providers_names(
    cdn: FakeCDN, enqueued: list[object], settings: object
) -> None:
    campaign = make_campaign("names")
    task = make_task(
        campaign,
        num_images=len(HOSTILE_PATHS),
        status="succeeded",
        provider_task_id="i7-task",
        outputs=[{"url": f"https://cdn.test{path}", "nsfw": False} for path in HOSTILE_PATHS],
    )
    for index, path in enumerate(HOSTILE_PATHS):
        served_as = httpx.URL(f"https://cdn.test{path}").path
        cdn.files[served_as] = image_bytes("PNG", (20 + index, 10))

    outcome = jobs.complete(task.pk)

    assert outcome.stored == len(HOSTILE_PATHS), outcome
    images = list(GeneratedImage.objects.filter(task=task).order_by("index"))
    for image in images:
        pattern = rf"imagen/names/{task.pk}-{image.index}-{image.sha256[:12]}-[0-9a-f]{{6}}\.png"
        assert re.fullmatch(pattern, image.file.name), image.file.name
        thumb = (
            rf"imagen/names/thumbs/{task.pk}-{image.index}-{image.sha256[:12]}-[0-9a-f]{{6}}\.jpg"
        )
        assert re.fullmatch(thumb, image.thumbnail.name), image.thumbnail.name
        assert default_storage.exists(image.file.name)
    assert len(cdn.requests) == len(HOSTILE_PATHS)
