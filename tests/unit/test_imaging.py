"""Checking downloaded bytes (docs/reliability.md I1-I4): formats, metadata, thumbnails, bombs."""

from __future__ import annotations

import hashlib
import io
import struct
import time
import tracemalloc
import zlib

import pytest
from PIL import Image
from unit_helpers import image_bytes

from imagen_assets.imaging import CheckedImage, ImageRejected, check_image

LIMIT = 40_000_000


def check(data: bytes, *, max_pixels: int = LIMIT, thumbnail_size: int = 400) -> CheckedImage:
    return check_image(data, max_pixels=max_pixels, thumbnail_size=thumbnail_size)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def bomb_png(width: int, height: int) -> bytes:
    """A valid 1-bit greyscale PNG of all-black rows: tiny on disk, huge once decoded."""
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    compressor = zlib.compressobj(9)
    rows_per_piece = 1000
    pieces = [compressor.compress(row * rows_per_piece) for _ in range(height // rows_per_piece)]
    pieces.append(compressor.compress(row * (height % rows_per_piece)))
    pieces.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", b"".join(pieces))
        + png_chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def bomb_20k() -> bytes:
    return bomb_png(20_000, 20_000)


class AcceptedFormatTests:
    @pytest.mark.parametrize(
        ("fmt", "content_type", "extension"),
        [
            ("JPEG", "image/jpeg", "jpg"),
            ("PNG", "image/png", "png"),
            ("WEBP", "image/webp", "webp"),
        ],
    )
    def test_accepts_and_describes_the_image(self, fmt, content_type, extension):
        data = image_bytes(fmt, size=(120, 80))

        checked = check(data)

        assert checked.content == data
        assert checked.content_type == content_type
        assert checked.extension == extension
        assert (checked.width, checked.height) == (120, 80)
        assert checked.sha256 == hashlib.sha256(data).hexdigest()

    @pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "LA"])
    def test_thumbnail_is_a_jpeg_within_the_size(self, mode):
        data = image_bytes("PNG", size=(900, 300), mode=mode)

        checked = check(data, thumbnail_size=100)

        thumb = Image.open(io.BytesIO(checked.thumbnail))
        assert thumb.format == "JPEG"
        assert max(thumb.size) <= 100
        assert thumb.size == (100, 33)

    def test_a_small_image_is_not_enlarged_for_its_thumbnail(self):
        checked = check(image_bytes("JPEG", size=(50, 40)), thumbnail_size=400)

        assert Image.open(io.BytesIO(checked.thumbnail)).size == (50, 40)

    def test_accepts_an_image_of_exactly_max_pixels(self):
        checked = check(image_bytes("PNG", size=(100, 50)), max_pixels=5000)

        assert (checked.width, checked.height) == (100, 50)


class RefusedContentTests:
    @pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF", "ICO", "PPM"])
    def test_refuses_other_image_formats(self, fmt):
        with pytest.raises(ImageRejected, match="not a JPEG, PNG or WebP"):
            check(image_bytes(fmt, size=(32, 32)))

    @pytest.mark.parametrize(
        "data",
        [
            b"",
            b"hello, I am text",
            b"<html><body>Access denied</body></html>",
            b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
            b"%!PS-Adobe-3.0 EPSF-3.0\n",
        ],
        ids=["empty", "text", "html", "svg", "eps"],
    )
    def test_refuses_bytes_that_are_not_an_image(self, data):
        with pytest.raises(ImageRejected, match="not a JPEG, PNG or WebP"):
            check(data)

    @pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
    def test_refuses_a_truncated_image(self, fmt):
        data = image_bytes(fmt, size=(256, 256))

        with pytest.raises(ImageRejected):
            check(data[: len(data) // 2])

    def test_truncated_jpeg_is_reported_as_damaged(self):
        data = image_bytes("JPEG", size=(256, 256))

        with pytest.raises(ImageRejected, match="damaged"):
            check(data[: len(data) // 2])


class DecompressionBombTests:
    def test_refuses_an_image_over_max_pixels_from_its_header_alone(self):
        data = image_bytes("PNG", size=(100, 51))

        with pytest.raises(ImageRejected, match=r"100x51, over the 5,000 pixel limit"):
            check(data, max_pixels=5000)

    def test_refuses_a_bomb_under_pillows_own_limit_before_decoding(self):
        data = bomb_png(8000, 8000)  # 64 Mpx: over our 40 Mpx, under Pillow's 89 Mpx
        tracemalloc.start()
        started = time.perf_counter()
        try:
            with pytest.raises(ImageRejected, match=r"8000x8000, over the 40,000,000 pixel"):
                check(data)
            elapsed = time.perf_counter() - started
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

        assert elapsed < 1.0
        assert peak < 5_000_000  # decoding would need 64 MB

    def test_refuses_a_20000_by_20000_bomb_quickly_without_decoding(self, bomb_20k):
        assert len(bomb_20k) < 100_000
        tracemalloc.start()
        started = time.perf_counter()
        try:
            with pytest.raises(ImageRejected):
                check(bomb_20k)
            elapsed = time.perf_counter() - started
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

        assert elapsed < 1.0
        assert peak < 5_000_000  # decoding would need 400 MB

    @pytest.mark.parametrize("side", [10_000, 20_000])
    def test_says_a_huge_image_is_too_large(self, side, bomb_20k):
        data = bomb_20k if side == 20_000 else bomb_png(side, side)

        with pytest.raises(ImageRejected, match=r"pixel limit|too large"):
            check(data)
