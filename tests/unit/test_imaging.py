"""Checking downloaded bytes (docs/reliability.md I1-I6): formats, a clean stored copy,
provenance, thumbnails, bombs, animations, the per-process pixel budget."""

from __future__ import annotations

import hashlib
import io
import math
import struct
import threading
import time
import tracemalloc
import zlib

import pytest
from PIL import Image, ImageChops, ImageStat
from unit_helpers import image_bytes

from imagen_assets import conf
from imagen_assets.imaging import (
    CheckedImage,
    ImageRejected,
    PixelBudget,
    Provenance,
    check_image,
    provenance_xmp,
)
from tests import hostile_images as hostile

LIMIT = conf.DEFAULTS["MAX_IMAGE_PIXELS"]
MADE_BY = Provenance(model="imagen-4.0", provider="Wave")


def check(
    data: bytes,
    *,
    max_pixels: int = LIMIT,
    thumbnail_size: int = 400,
    provenance: Provenance | None = None,
    budget: PixelBudget | None = None,
) -> CheckedImage:
    return check_image(
        data,
        max_pixels=max_pixels,
        thumbnail_size=thumbnail_size,
        provenance=provenance,
        budget=budget or PixelBudget(),
    )


def pixels(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def psnr(a: Image.Image, b: Image.Image) -> float:
    diff = ImageChops.difference(a.convert("RGB"), b.convert("RGB"))
    mse = sum(ImageStat.Stat(diff).sum2) / (3 * a.width * a.height)
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


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

        assert checked.content_type == content_type
        assert checked.extension == extension
        assert (checked.width, checked.height) == (120, 80)
        assert pixels(checked.content).format == fmt
        assert checked.sha256 == hashlib.sha256(checked.content).hexdigest()
        assert checked.served_sha256 == hashlib.sha256(data).hexdigest()
        assert checked.provider_c2pa is False

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

    @pytest.mark.parametrize(
        ("size", "expected"), [((2816, 1536), (400, 218)), ((1024, 1024), (400, 400))]
    )
    def test_the_thumbnail_is_the_clean_copys_pixels_scaled_down(self, size, expected):
        from imagen_assets.sandbox.images import ImageSpec, render_image

        data = render_image(
            ImageSpec(
                api_label="Wave",
                aspect_ratio="16:9",
                width=size[0],
                height=size[1],
                seed=7,
                prompt="small text shows a shifted or aliased thumbnail",
                index=0,
            )
        )

        checked = check(data, thumbnail_size=400)

        thumb = pixels(checked.thumbnail)
        assert thumb.size == expected
        fair = pixels(checked.content).resize(expected, Image.Resampling.LANCZOS)
        # About 30 dB (the JPEG at quality 82 included); nearest-neighbour or a shift by a few
        # pixels gives 15 to 24 dB.
        assert psnr(thumb, fair) > 28

    def test_the_thumbnail_follows_the_exif_orientation(self):
        checked = check(hostile.hostile_jpeg(orientation=6), thumbnail_size=100)

        assert pixels(checked.thumbnail).size == (75, 100)

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

    @pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
    def test_only_damaged_data_is_flagged_as_worth_downloading_again(self, fmt):
        """I4: a cut-short file is ``damaged`` (a second download may be whole); a file
        that is not an image at all is not."""
        data = image_bytes(fmt, size=(256, 256))

        with pytest.raises(ImageRejected) as cut:
            check(data[: len(data) // 2])
        with pytest.raises(ImageRejected) as other:
            check(b"<html><body>Access denied</body></html>")

        assert cut.value.damaged is True
        assert other.value.damaged is False


class DecompressionBombTests:
    def test_refuses_an_image_over_max_pixels_from_its_header_alone(self):
        data = image_bytes("PNG", size=(100, 51))

        with pytest.raises(ImageRejected, match=r"100x51, over the 5,000 pixel limit"):
            check(data, max_pixels=5000)

    def test_refuses_a_bomb_under_pillows_own_limit_before_decoding(self):
        data = bomb_png(8000, 8000)  # 64 Mpx: over our 8.4 Mpx, under Pillow's 89 Mpx
        tracemalloc.start()
        started = time.perf_counter()
        try:
            with pytest.raises(ImageRejected, match=r"8000x8000, over the 8,388,608 pixel"):
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


def rgba_png(side: int) -> bytes:
    """A flat RGBA PNG: a few hundred KB on the wire, ``side * side * 4`` bytes decoded."""
    buffer = io.BytesIO()
    Image.new("RGBA", (side, side), (200, 30, 30, 255)).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


class DefaultPixelLimitTests:
    """I1, I2 with the default limit, nearer Imagen 4's largest output (2560x1792)."""

    @pytest.mark.parametrize("size", [(2048, 2048), (2560, 1792), (2816, 1536), (1792, 2560)])
    def test_every_imagen_4_size_is_under_the_default_limit(self, size):
        assert size[0] * size[1] <= LIMIT

    def test_refuses_the_6324_square_rgba_png_before_decoding_it(self):
        data = rgba_png(6324)  # 160 MB decoded; seen peaking a worker at 332 MiB
        tracemalloc.start()
        try:
            with pytest.raises(ImageRejected, match=r"6324x6324, over the 8,388,608 pixel"):
                check(data)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

        assert peak < 5_000_000

    def test_refuses_10000_square_in_pillows_warning_zone(self):
        with pytest.raises(ImageRejected, match="pixel limit"):
            check(bomb_png(10_000, 10_000))


class CleanCopyTests:
    """I5: the stored file carries its pixels and the app's provenance, nothing else."""

    @pytest.mark.parametrize(
        "make",
        [
            hostile.hostile_jpeg,
            hostile.hostile_png,
            lambda: hostile.hostile_png("P"),
            lambda: hostile.hostile_png("RGB"),
            hostile.hostile_webp,
            lambda: hostile.hostile_webp(lossless=True),
        ],
        ids=["jpeg", "png-rgba", "png-palette", "png-rgb", "webp-lossy", "webp-lossless"],
    )
    def test_a_hostile_file_is_stored_clean_with_only_the_apps_xmp(self, make):
        data = make()
        for marker in (b"<script", b"leaked", b"PK\x03\x04"):
            assert marker in data  # the served file really is hostile

        checked = check(data, provenance=MADE_BY)

        stored = hostile.assert_clean(checked.content, provenance_xmp(MADE_BY))
        assert stored.size == (checked.width, checked.height) == (320, 240)
        assert checked.sha256 == hashlib.sha256(checked.content).hexdigest()
        assert checked.served_sha256 == hashlib.sha256(data).hexdigest()

    def test_the_provenance_names_the_digital_source_type_model_and_provider(self):
        xmp = provenance_xmp(Provenance(model='imagen-4.0 "ultra" <x>', provider="WaveSpeed AI"))

        text = xmp.decode()
        assert (
            'Iptc4xmpExt:DigitalSourceType="http://cv.iptc.org/newscodes/digitalsourcetype/'
            'trainedAlgorithmicMedia"'
        ) in text
        assert "Iptc4xmpExt:AISystemUsed='imagen-4.0 \"ultra\" &lt;x&gt;'" in text
        assert 'xmp:CreatorTool="WaveSpeed AI"' in text

    @pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "L", "LA"])
    def test_a_png_keeps_its_exact_pixels(self, mode):
        data = hostile.hostile_png(mode) if mode in ("RGB", "RGBA", "P") else None
        if data is None:
            buffer = io.BytesIO()
            hostile.picture(mode=mode).save(buffer, "PNG")
            data = buffer.getvalue()
        served = pixels(data)

        stored = pixels(check(data, provenance=MADE_BY).content)

        assert stored.mode == served.mode
        assert stored.tobytes() == served.tobytes()
        assert stored.info.get("transparency") == served.info.get("transparency")

    def test_a_lossless_webp_keeps_its_exact_pixels(self):
        data = hostile.hostile_webp(lossless=True)

        stored = pixels(check(data).content)

        assert stored.tobytes() == pixels(data).tobytes()

    @pytest.mark.parametrize("quality", [75, 90, 95])
    def test_a_jpeg_is_written_with_its_own_tables_nearly_losslessly(self, quality):
        buffer = io.BytesIO()
        hostile.picture((512, 384)).save(buffer, "JPEG", quality=quality)
        data = buffer.getvalue()

        clean = check(data).content

        assert pixels(clean).quantization == pixels(data).quantization  # type: ignore[attr-defined]
        # A grainy picture is the worst case (41 to 49 dB); smooth ones reach 59 to 78 dB
        # (benchmarks.decode_memory --quality).
        assert psnr(pixels(clean), pixels(data)) > 38
        assert len(clean) < 1.03 * len(data)

    def test_a_lossy_webp_is_written_at_high_quality(self):
        data = hostile.hostile_webp()

        assert psnr(pixels(check(data).content), pixels(data)) > 35

    def test_the_exif_orientation_is_applied_to_the_pixels(self):
        data = hostile.hostile_jpeg(orientation=6)  # rotate 90 degrees to display

        checked = check(data)

        assert (checked.width, checked.height) == (240, 320)
        hostile.assert_clean(checked.content, None)

    def test_an_embedded_srgb_profile_is_not_kept_and_the_colours_stay(self):
        from PIL import ImageCms

        buffer = io.BytesIO()
        srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
        Image.new("RGB", (8, 8), (200, 40, 40)).save(buffer, "PNG", icc_profile=srgb)

        stored = pixels(check(buffer.getvalue()).content)

        assert "icc_profile" not in stored.info
        red = stored.getpixel((0, 0))
        assert all(abs(a - b) <= 1 for a, b in zip(red, (200, 40, 40), strict=True))

    @pytest.mark.parametrize(
        ("make", "expected"),
        [
            (lambda: hostile.hostile_jpeg(c2pa=True), True),
            (hostile.hostile_jpeg, False),
            (hostile.hostile_png, True),
            (hostile.hostile_webp, True),
            (lambda: image_bytes("PNG"), False),
            (lambda: image_bytes("WEBP"), False),
        ],
        ids=["jpeg-app11", "jpeg-none", "png-cabx", "webp-c2pa", "png-none", "webp-none"],
    )
    def test_records_whether_the_served_file_carried_a_c2pa_manifest(self, make, expected):
        checked = check(make())

        assert checked.provider_c2pa is expected
        assert b"c2pa" not in checked.content


class MultiFrameTests:
    """I6: animations are refused before their frames are decoded."""

    @pytest.mark.parametrize("fmt", ["WEBP", "PNG"], ids=["webp", "apng"])
    def test_refuses_a_300_frame_animation(self, fmt):
        data = hostile.animated(fmt, frames=300)

        with pytest.raises(ImageRejected, match=r"animated or multi-frame.*300 frames"):
            check(data)

    @pytest.mark.parametrize("fmt", ["WEBP", "PNG"], ids=["webp", "apng"])
    def test_refuses_even_two_frames(self, fmt):
        with pytest.raises(ImageRejected, match="animated"):
            check(hostile.animated(fmt, frames=2))

    def test_refuses_a_multi_picture_jpeg(self):
        buffer = io.BytesIO()
        first, second = hostile.picture((64, 48)), hostile.picture((64, 48))
        first.save(buffer, "MPO", save_all=True, append_images=[second])

        with pytest.raises(ImageRejected, match=r"animated or multi-frame.*2 frames"):
            check(buffer.getvalue())

    def test_refuses_an_animated_gif_as_a_format(self):
        with pytest.raises(ImageRejected, match="not a JPEG, PNG or WebP"):
            check(hostile.animated("GIF", frames=300))


class PixelBudgetTests:
    """I1: one process decodes at most the limit's pixels at once; one image always runs."""

    def test_a_second_image_waits_until_the_first_is_done(self):
        budget = PixelBudget()
        release = threading.Event()
        entered: list[str] = []

        def hold(name: str) -> None:
            with budget.hold(6, 10):
                entered.append(name)
                release.wait(30)

        first = threading.Thread(target=hold, args=("first",))
        first.start()
        wait_until(lambda: entered == ["first"])
        second = threading.Thread(target=hold, args=("second",))
        second.start()
        wait_until(lambda: budget.waiting == 1)

        assert entered == ["first"] and budget.in_use == 6
        release.set()
        first.join(30)
        second.join(30)
        assert entered == ["first", "second"]
        assert budget.peak == 6 and budget.in_use == 0

    def test_small_images_share_the_budget(self):
        budget = PixelBudget()
        with budget.hold(4, 10), budget.hold(4, 10):
            assert budget.in_use == 8

    def test_one_image_over_what_is_left_still_runs_alone(self):
        budget = PixelBudget()
        with budget.hold(12, 10):
            assert budget.in_use == 12

    def test_check_image_holds_the_images_pixels_while_decoding(self):
        budget = PixelBudget()
        seen: list[int] = []
        real_hold = budget.hold

        def spy(pixels: int, limit: int):
            seen.append(pixels)
            return real_hold(pixels, limit)

        budget.hold = spy  # type: ignore[method-assign]

        check(image_bytes("PNG", size=(120, 80)), budget=budget)

        assert seen == [120 * 80] and budget.in_use == 0


def wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met")
        time.sleep(0.01)
