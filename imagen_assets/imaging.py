"""Checking downloaded bytes really are an image, and making its thumbnail (Pillow)."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

#: Formats accepted from providers, with their content type and file extension.
FORMATS: dict[str, tuple[str, str]] = {
    "JPEG": ("image/jpeg", "jpg"),
    "PNG": ("image/png", "png"),
    "WEBP": ("image/webp", "webp"),
}


class ImageRejected(Exception):
    """The bytes are not an acceptable image; the message is fit for the admin."""


@dataclass(frozen=True)
class CheckedImage:
    content: bytes
    content_type: str
    extension: str
    width: int
    height: int
    sha256: str
    thumbnail: bytes


def check_image(data: bytes, *, max_pixels: int, thumbnail_size: int) -> CheckedImage:
    """Fully decode ``data`` under a pixel limit and build a JPEG thumbnail.

    The size is read from the header first, so an oversized image (a decompression bomb)
    is refused before any pixel is decoded. The original bytes are kept as they are.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=list(FORMATS))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageRejected(
                    f"image is {width}x{height}, over the {max_pixels:,} pixel limit"
                )
            image.load()
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected(f"image is too large (over the {max_pixels:,} pixel limit)") from None
    except UnidentifiedImageError:
        raise ImageRejected("not a JPEG, PNG or WebP image") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected(f"image data is damaged ({exc})") from None
    content_type, extension = FORMATS[image.format or ""]
    thumb = image.convert("RGB") if image.mode not in ("RGB", "L") else image
    thumb.thumbnail((thumbnail_size, thumbnail_size), Image.Resampling.LANCZOS, reducing_gap=2.0)
    buffer = io.BytesIO()
    thumb.save(buffer, "JPEG", quality=82, optimize=False)
    return CheckedImage(
        content=data,
        content_type=content_type,
        extension=extension,
        width=width,
        height=height,
        sha256=hashlib.sha256(data).hexdigest(),
        thumbnail=buffer.getvalue(),
    )
