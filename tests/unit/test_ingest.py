"""Storing one result (imagen_assets.ingest): a failed run leaves no file behind."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.storage import default_storage
from unit_helpers import image_bytes, make_campaign, make_task

from imagen_assets import ingest
from imagen_assets.imaging import check_image
from imagen_assets.lifecycle import FileFields

pytestmark = pytest.mark.django_db


def checked_png() -> Any:
    return check_image(image_bytes("PNG", (20, 10)), max_pixels=10_000, thumbnail_size=8)


class StoreTests:
    def test_stores_the_original_and_its_thumbnail(self) -> None:
        image = make_task(make_campaign(), status="succeeded").images.get()

        result = ingest.store(image, checked_png())

        assert isinstance(result, FileFields)
        assert result.file.startswith("imagen/spring/") and result.file.endswith(".png")
        assert result.thumbnail.startswith("imagen/spring/thumbs/")
        assert default_storage.exists(result.file) and default_storage.exists(result.thumbnail)

    def test_a_failed_thumbnail_write_removes_the_original(self, monkeypatch) -> None:
        image = make_task(make_campaign(), status="succeeded").images.get()
        written: list[str] = []
        real_save = ingest.save_file

        def save_then_fill_the_disk(name: str, content: bytes) -> str:
            if written:
                raise OSError(28, "No space left on device")
            written.append(real_save(name, content))
            return written[-1]

        monkeypatch.setattr(ingest, "save_file", save_then_fill_the_disk)

        with pytest.raises(OSError):
            ingest.store(image, checked_png())

        assert len(written) == 1
        assert not default_storage.exists(written[0])

    def test_discard_removes_both_files(self) -> None:
        image = make_task(make_campaign(), status="succeeded").images.get()
        result = ingest.store(image, checked_png())

        ingest.discard(result)

        assert not default_storage.exists(result.file)
        assert not default_storage.exists(result.thumbnail)
