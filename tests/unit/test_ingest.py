"""Fetching and storing one result (imagen_assets.ingest): transient failures are tried
again (D10), a clean copy is stored, a failed run leaves no file behind."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.core.files.storage import default_storage
from unit_helpers import image_bytes, make_campaign, make_task

from imagen_assets import ingest
from imagen_assets.downloads import Downloaded, DownloadError
from imagen_assets.hosts import ResultHosts
from imagen_assets.imaging import ImageRejected, Provenance, check_image
from imagen_assets.lifecycle import FileFields
from tests import hostile_images as hostile

pytestmark = pytest.mark.django_db

CDN = ResultHosts.of(["cdn.test"], "RESULT_HOSTS")


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


@dataclass
class Script:
    """A CDN that answers each download with the next of ``answers`` (bytes, or an error
    to raise); a download beyond them fails the test."""

    answers: list[bytes | DownloadError] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    def download(self, url: str, **kwargs: Any) -> Downloaded:
        self.calls.append(url)
        assert self.answers, f"unexpected download #{len(self.calls)} of {url}"
        answer = self.answers.pop(0)
        if isinstance(answer, DownloadError):
            raise answer
        return Downloaded(answer, "image/png", url)


class FetchRetryTests:
    """D10: a transient failure is tried again within the download's time; Retry-After is
    honoured when it fits, otherwise the image is left for a later run."""

    @pytest.fixture
    def cdn(self, monkeypatch: pytest.MonkeyPatch) -> Script:
        script = Script()
        monkeypatch.setattr(ingest, "download", script.download)
        return script

    def run(self, cdn: Script, *answers: bytes | DownloadError) -> Any:
        cdn.answers.extend(answers)
        return ingest.fetch_and_check("https://cdn.test/a.png", CDN)

    def test_a_host_answering_503_twice_then_the_image_is_stored(
        self, cdn: Script, slept: list[float]
    ) -> None:
        busy = DownloadError("cdn.test answered HTTP 503", transient=True)

        checked = self.run(cdn, busy, busy, image_bytes("PNG", (20, 10)))

        assert (checked.width, checked.height) == (20, 10)
        assert len(cdn.calls) == 3
        assert len(slept) == 2
        assert 0 < slept[0] <= 1 and 0 < slept[1] <= 2  # full jitter, doubling

    def test_retry_after_is_waited_when_it_fits_in_the_download_time(
        self, cdn: Script, slept: list[float]
    ) -> None:
        limited = DownloadError("cdn.test answered HTTP 429", transient=True, retry_after=7)

        self.run(cdn, limited, image_bytes("PNG"))

        assert slept == [7]

    def test_a_longer_retry_after_leaves_the_image_for_a_later_run(
        self, cdn: Script, slept: list[float]
    ) -> None:
        limited = DownloadError("cdn.test answered HTTP 429", transient=True, retry_after=600)

        with pytest.raises(DownloadError) as caught:
            self.run(cdn, limited)

        assert (caught.value.transient, caught.value.retry_after) == (True, 600)
        assert slept == []

    def test_gives_up_for_this_run_after_the_attempts(
        self, cdn: Script, slept: list[float]
    ) -> None:
        busy = DownloadError("cdn.test answered HTTP 502", transient=True)

        with pytest.raises(DownloadError, match="502"):
            self.run(cdn, *[busy] * ingest.DOWNLOAD_ATTEMPTS)

        assert len(cdn.calls) == ingest.DOWNLOAD_ATTEMPTS
        assert len(slept) == ingest.DOWNLOAD_ATTEMPTS - 1

    def test_a_damaged_file_is_downloaded_once_more_and_kept_when_whole(
        self, cdn: Script, slept: list[float]
    ) -> None:
        """I4: a CDN served a partial file once; the second download is whole."""
        whole = image_bytes("JPEG", (64, 48))

        checked = self.run(cdn, whole[: len(whole) // 2], whole)

        assert (checked.width, checked.height) == (64, 48)
        assert len(cdn.calls) == 2

    def test_a_file_damaged_in_both_downloads_is_refused_with_the_reason(
        self, cdn: Script, slept: list[float]
    ) -> None:
        whole = image_bytes("PNG", (64, 48))
        cut = whole[: len(whole) // 2]

        with pytest.raises(ImageRejected, match=r"damaged .*, in each of 2 downloads") as caught:
            self.run(cdn, cut, cut)

        assert caught.value.damaged is True
        assert len(cdn.calls) == ingest.DAMAGED_DOWNLOADS == 2

    @pytest.mark.parametrize(
        "body",
        [b"<html>Access denied</html>", image_bytes("GIF")],
        ids=["not-an-image", "other-format"],
    )
    def test_a_refused_file_that_is_not_damaged_is_not_downloaded_again(
        self, cdn: Script, slept: list[float], body: bytes
    ) -> None:
        with pytest.raises(ImageRejected) as caught:
            self.run(cdn, body)

        assert caught.value.damaged is False
        assert len(cdn.calls) == 1

    def test_an_expired_url_is_not_tried_again(self, cdn: Script, slept: list[float]) -> None:
        expired = DownloadError("cdn.test answered HTTP 403: the result URL expired")

        with pytest.raises(DownloadError, match="expired"):
            self.run(cdn, expired)

        assert len(cdn.calls) == 1 and slept == []

    def test_ingest_reports_a_transient_failure_with_the_hosts_retry_after(
        self, cdn: Script
    ) -> None:
        image = make_task(make_campaign(), status="succeeded").images.get()
        cdn.answers.append(
            DownloadError("cdn.test answered HTTP 429", transient=True, retry_after=900)
        )

        result = ingest.ingest(image, "https://cdn.test/a.png", CDN)

        assert result == ingest.NotStored(
            "Could not store the image: cdn.test answered HTTP 429", transient=True, retry_after=900
        )


class StoredCopyTests:
    def test_stores_the_clean_copy_with_the_served_hash_and_c2pa_flag(self) -> None:
        image = make_task(make_campaign(), status="succeeded").images.get()
        served = hostile.hostile_png()
        checked = check_image(
            served,
            max_pixels=10**6,
            thumbnail_size=8,
            provenance=Provenance(model="imagen-4.0", provider="Wave"),
        )

        result = ingest.store(image, checked)

        with default_storage.open(result.file) as stored:
            clean = stored.read()
        assert clean == checked.content
        assert result.sha256 == hashlib.sha256(clean).hexdigest()
        assert result.sha256[:12] in result.file
        assert result.served_sha256 == hashlib.sha256(served).hexdigest()
        assert result.provider_c2pa is True
        assert result.bytes == len(clean)
