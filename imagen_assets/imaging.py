"""Checking downloaded bytes really are an image, storing a clean copy of it, and making
its thumbnail (Pillow).

What a provider serves is decoded under a pixel limit and written again from its pixels
(docs/reliability.md I5): nothing of the served file but its pixels is kept (no EXIF or GPS,
comments, text chunks, ICC profile, XMP, C2PA manifest, or bytes after the end marker), and
the only metadata of the clean file is the provenance this app writes (IPTC/XMP digital
source type, AI system, provider). How each format is written again, and what it costs:

* JPEG: encoded again with the served file's own quantisation tables and chroma
  subsampling, so the second generation is nearly lossless (PSNR 59 to 78 dB against the
  decoded original, size within 1 %; ``benchmarks.decode_memory --quality`` measures it).
* PNG: lossless, so the pixels are exactly the served ones.
* WebP: lossless when the served file was (exact pixels), otherwise quality
  :data:`WEBP_LOSSY_QUALITY`.

Animated or multi-frame images are refused (I6). Decoding is bounded per process by a
pixel budget (:class:`PixelBudget`): images decoded at once by one worker (the threads of
one ``complete()``) never add up to more than ``MAX_IMAGE_PIXELS``, so a big image waits
for the others instead of multiplying the peak memory (I1, I2).
"""

from __future__ import annotations

import hashlib
import io
import struct
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

from django.utils.translation import gettext as _
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError
from PIL.JpegImagePlugin import get_sampling

#: Formats accepted from providers, with their content type and file extension.
FORMATS: dict[str, tuple[str, str]] = {
    "JPEG": ("image/jpeg", "jpg"),
    "PNG": ("image/png", "png"),
    "WEBP": ("image/webp", "webp"),
}

#: The IPTC digital source type of media made by a generative model.
DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"

#: Quality a lossy WebP is written again at (PSNR about 50 to 54 dB against the served
#: file's pixels for sources of quality 80 to 90).
WEBP_LOSSY_QUALITY = 90

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageRejected(Exception):
    """The bytes are not an acceptable image; the message is fit for the admin.

    ``damaged``: the file is a JPEG, PNG or WebP whose data is cut short or corrupt (found
    by a full decode), as a partial transfer from a CDN would be; downloading it again may
    give the whole file (row I4). Other refusals (not an image, too large, animated) never
    change on a second download.
    """

    def __init__(self, message: str, *, damaged: bool = False) -> None:
        super().__init__(message)
        self.damaged = damaged


@dataclass(frozen=True)
class Provenance:
    """What the clean file says about where it came from (IPTC guidance for generative AI)."""

    model: str
    provider: str


@dataclass(frozen=True)
class CheckedImage:
    """A clean image ready to store. ``sha256`` names ``content`` (the clean file);
    ``served_sha256`` is the hash of the bytes the provider served."""

    content: bytes
    content_type: str
    extension: str
    width: int
    height: int
    sha256: str
    served_sha256: str
    provider_c2pa: bool
    thumbnail: bytes


class PixelBudget:
    """Pixels being decoded at once in this process, kept under a limit.

    An image larger than what is left waits until the others are done; one image alone is
    always let through (the pixel limit has refused anything larger already).
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self.in_use = 0
        self.peak = 0
        self.waiting = 0

    @contextmanager
    def hold(self, pixels: int, limit: int) -> Iterator[None]:
        with self._condition:
            self.waiting += 1
            self._condition.wait_for(lambda: self.in_use == 0 or self.in_use + pixels <= limit)
            self.waiting -= 1
            self.in_use += pixels
            self.peak = max(self.peak, self.in_use)
        try:
            yield
        finally:
            with self._condition:
                self.in_use -= pixels
                self._condition.notify_all()


#: The budget of this process (a worker's work-horse, or a web process).
DECODING = PixelBudget()


def provenance_xmp(provenance: Provenance) -> bytes:
    """The XMP packet of a clean file: digital source type, AI system (the model) and the
    provider (as the creator tool)."""
    packet = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about=""'
        ' xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"'
        ' xmlns:xmp="http://ns.adobe.com/xap/1.0/"'
        f" Iptc4xmpExt:DigitalSourceType={quoteattr(DIGITAL_SOURCE_TYPE)}"
        f" Iptc4xmpExt:AISystemUsed={quoteattr(provenance.model[:200])}"
        f" xmp:CreatorTool={quoteattr(provenance.provider[:200])}/>"
        "</rdf:RDF></x:xmpmeta>"
        '<?xpacket end="r"?>'
    )
    return packet.encode("utf-8")


# -- containers -------------------------------------------------------------------------------


def png_chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(type, data) of each chunk of a PNG file, up to IEND or the first damaged one."""
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        yield kind, data[pos + 8 : pos + 8 + length]
        if kind == b"IEND":
            return
        pos += 12 + length


def riff_chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(fourcc, data) of each top-level chunk of a WebP (RIFF) file."""
    pos = 12
    end = min(len(data), 8 + struct.unpack("<I", data[4:8])[0]) if len(data) >= 12 else 0
    while pos + 8 <= end:
        kind, length = struct.unpack("<4sI", data[pos : pos + 8])
        yield kind, data[pos + 8 : pos + 8 + length]
        pos += 8 + length + (length & 1)


def has_c2pa(image: Image.Image, data: bytes) -> bool:
    """Whether the served file carried a C2PA manifest: JUMBF in JPEG APP11, a PNG
    ``caBX`` chunk, or a WebP ``C2PA`` chunk."""
    if image.format == "JPEG":
        applist: list[tuple[str, bytes]] = getattr(image, "applist", [])
        return any(name == "APP11" and b"c2pa" in body for name, body in applist)
    if image.format == "PNG":
        return any(kind == b"caBX" for kind, _body in png_chunks(data))
    if image.format == "WEBP":
        return any(kind == b"C2PA" for kind, _body in riff_chunks(data))
    return False


def _webp_is_lossless(data: bytes) -> bool:
    return any(kind == b"VP8L" for kind, _body in riff_chunks(data))


# -- checking and cleaning --------------------------------------------------------------------


def check_image(
    data: bytes,
    *,
    max_pixels: int,
    thumbnail_size: int,
    provenance: Provenance | None = None,
    budget: PixelBudget = DECODING,
) -> CheckedImage:
    """Fully decode ``data`` under a pixel limit, write it again clean, build a JPEG
    thumbnail.

    The size and frame count are read from the header first, so an oversized image (a
    decompression bomb) or an animation is refused before any pixel is decoded.
    """
    try:
        # Only around the header read: the warnings filters are global to the process.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=list(FORMATS))
        width, height = image.size
        if width * height > max_pixels:
            raise ImageRejected(
                _("image is %(width)dx%(height)d, over the %(limit)s pixel limit")
                % {"width": width, "height": height, "limit": f"{max_pixels:,}"}
            )
        frames = getattr(image, "n_frames", 1)
        if frames != 1 or image.format not in FORMATS:
            raise ImageRejected(
                _("animated or multi-frame images are not accepted (%(frames)d frames)")
                % {"frames": frames}
            )
        with budget.hold(width * height, max_pixels):
            image.load()
            return _clean(image, data, provenance, thumbnail_size)
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected(
            _("image is too large (over the %(limit)s pixel limit)") % {"limit": f"{max_pixels:,}"}
        ) from None
    except UnidentifiedImageError:
        raise ImageRejected(_("not a JPEG, PNG or WebP image")) from None
    except (OSError, SyntaxError, ValueError, struct.error) as exc:
        raise ImageRejected(
            _("image data is damaged (%(error)s)") % {"error": exc}, damaged=True
        ) from None


def clean_options(
    image: Image.Image, data: bytes, provenance: Provenance | None
) -> dict[str, object]:
    """The ``Image.save`` options the clean copy of ``image`` (decoded from ``data``) is
    written with, in its own format: the served JPEG's quantisation tables and chroma
    subsampling, lossless or quality :data:`WEBP_LOSSY_QUALITY` WebP, PNG with its
    transparency; the provenance XMP in each. Read before the pixels are turned or
    converted (the served file's info is still there)."""
    fmt = image.format or ""
    xmp = provenance_xmp(provenance) if provenance else b""
    options: dict[str, object] = {}
    if fmt == "PNG":
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        if xmp:
            info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8"), zip=False)
        options["pnginfo"] = info
        transparency = image.info.get("transparency")
        if transparency is not None and image.mode in ("1", "L", "P", "RGB", "I;16"):
            options["transparency"] = transparency
        return options
    if fmt == "JPEG":
        # The served file's own tables: the second generation is nearly lossless.
        options = {"qtables": getattr(image, "quantization", None)}
        options["subsampling"] = get_sampling(image)
    elif fmt == "WEBP":
        if _webp_is_lossless(data):
            options = {"lossless": True, "exact": True}
        else:
            options = {"quality": WEBP_LOSSY_QUALITY, "alpha_quality": 100}
    if xmp:
        options["xmp"] = xmp
    return options


def _clean(
    image: Image.Image, data: bytes, provenance: Provenance | None, thumbnail_size: int
) -> CheckedImage:
    fmt = image.format or ""
    content_type, extension = FORMATS[fmt]
    c2pa = has_c2pa(image, data)
    options = clean_options(image, data, provenance)
    icc = image.info.get("icc_profile")
    _apply_orientation(image)
    pixels = _to_srgb(image, icc) if icc else image
    pixels.info = {}
    buffer = io.BytesIO()
    pixels.save(buffer, fmt, **options)
    # Hashed where the encoder wrote it; getvalue() then hands over that same buffer
    # (CPython's BytesIO shares it when nothing else holds a view: no copy).
    with buffer.getbuffer() as encoded:
        sha256 = hashlib.sha256(encoded).hexdigest()
    content = buffer.getvalue()
    thumbnail = _thumbnail(pixels, thumbnail_size)
    return CheckedImage(
        content=content,
        content_type=content_type,
        extension=extension,
        width=pixels.width,
        height=pixels.height,
        sha256=sha256,
        served_sha256=hashlib.sha256(data).hexdigest(),
        provider_c2pa=c2pa,
        thumbnail=thumbnail,
    )


def _apply_orientation(image: Image.Image) -> None:
    """Turn the pixels as the EXIF orientation says, since the EXIF itself is not kept;
    EXIF that cannot be read is ignored (it is dropped anyway)."""
    with suppress(OSError, SyntaxError, ValueError, KeyError, TypeError, struct.error):
        ImageOps.exif_transpose(image, in_place=True)


def _to_srgb(image: Image.Image, icc: bytes) -> Image.Image:
    """The pixels in sRGB (the colour space an untagged file is shown in); the profile
    itself is not kept. A profile that cannot be read is dropped."""
    if image.mode not in ("RGB", "RGBA"):
        return image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        converted = ImageCms.profileToProfile(
            image, source, ImageCms.createProfile("sRGB"), outputMode=image.mode
        )
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return image
    return converted if converted is not None else image


#: How the thumbnail is made from the decoded pixels: first ``Image.reduce`` (box
#: averaging by the largest whole factor that keeps at least the thumbnail's size, e.g. 7
#: for a 2816-pixel side and 400), then a Hamming resample of that small image to the exact
#: size. About 3 ms for a 2K image (``benchmarks.complete`` times it with the rest of
#: ``complete()``), against 7 ms with Lanczos and reducing gap 2.0 (as before) and tens of
#: ms for a full Lanczos resample; PSNR 31 to 34 dB against the latter before the JPEG
#: encode (about 30 dB after it, tests/unit/test_imaging.py), hard to tell apart at 400 px.
THUMBNAIL_FILTER = Image.Resampling.HAMMING
THUMBNAIL_REDUCING_GAP = 1.0


def _thumbnail(image: Image.Image, size: int) -> bytes:
    """A JPEG of at most ``size`` pixels on its longest side, never enlarged, from the
    decoded pixels (no second decode)."""
    # Reduced first, then converted: no full-size RGB copy of an RGBA image.
    small = image.convert("RGB") if image.mode not in ("RGB", "RGBA", "L", "LA") else image
    scale = min(1.0, size / max(image.width, image.height))
    target = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if target != small.size:
        small = small.resize(target, THUMBNAIL_FILTER, reducing_gap=THUMBNAIL_REDUCING_GAP)
    if small.mode not in ("RGB", "L"):
        small = small.convert("RGB")
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=82, optimize=False)
    return buffer.getvalue()
