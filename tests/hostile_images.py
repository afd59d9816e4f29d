"""Hostile image files, made in the test (docs/reliability.md I5, I6), and the check that a
stored file is clean.

Each file decodes to an ordinary picture but carries what must never be stored: EXIF with a
GPS position, a JPEG comment, XMP, an ICC profile with text in it, PNG text chunks holding a
``<script>``, a C2PA manifest, and HTML and a ZIP archive after the image's end marker.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

from PIL import ExifTags, Image, ImageCms

from imagen_assets.imaging import png_chunks, riff_chunks

SCRIPT = b"<script>alert('stored')</script>"
HTML = b"<!doctype html><html><body>" + SCRIPT + b"</body></html>"
SECRET_XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    b'xmlns:exif="http://ns.adobe.com/exif/1.0/" exif:GPSLatitude="48,51.4N" '
    b'exif:UserComment="leaked-xmp"/></rdf:RDF></x:xmpmeta>'
)
#: Strings that must not be found anywhere in a stored file.
MARKERS = (b"<script", b"leaked", b"GPS", b"PK\x03\x04", b"ICC_PROFILE", b"c2pa", b"caBX")


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("payload.html", HTML)
    return buffer.getvalue()


APPENDED = HTML + _zip()


def picture(size: tuple[int, int] = (320, 240), mode: str = "RGB") -> Image.Image:
    """A smooth picture with some noise (so JPEG and lossy WebP behave as on a photo)."""
    gradient = Image.linear_gradient("L")
    across = gradient.transpose(Image.Transpose.ROTATE_90).resize(size)
    image = Image.merge("RGB", (gradient.resize(size), Image.effect_noise(size, 24), across))
    return image.convert(mode)


def gps_exif() -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.ImageDescription] = "leaked-exif"
    exif[ExifTags.Base.Make] = "Spy camera"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (48.0, 51.0, 24.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (2.0, 21.0, 3.0)
    return exif.tobytes()


def icc_with_text() -> bytes:
    """An sRGB profile with a script appended inside it (its size field counts it)."""
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    profile += b"leaked-icc " + SCRIPT
    return struct.pack(">I", len(profile)) + profile[4:]


def c2pa_app11() -> bytes:
    """A JPEG APP11 segment holding a (token) JUMBF box labelled c2pa."""
    jumbf = b"JP\x00\x01\x00\x00\x00\x01" + b"\x00\x00\x00\x20jumb\x00\x00\x00\x18jumdc2pa\x00"
    return b"\xff\xeb" + struct.pack(">H", len(jumbf) + 2) + jumbf


def png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def hostile_jpeg(*, c2pa: bool = False, orientation: int | None = None) -> bytes:
    """EXIF GPS, a comment with a script, XMP, an ICC profile with text, HTML and a ZIP
    after EOI; with ``c2pa`` a C2PA APP11 segment too."""
    buffer = io.BytesIO()
    exif = gps_exif()
    if orientation is not None:
        parsed = Image.Exif()
        parsed.load(exif)
        parsed[ExifTags.Base.Orientation] = orientation
        exif = parsed.tobytes()
    picture().save(
        buffer,
        "JPEG",
        quality=90,
        exif=exif,
        comment=b"leaked-comment " + SCRIPT,
        xmp=SECRET_XMP,
        icc_profile=icc_with_text(),
    )
    data = buffer.getvalue()
    if c2pa:
        data = data[:2] + c2pa_app11() + data[2:]
    return data + APPENDED


def hostile_png(mode: str = "RGBA") -> bytes:
    """tEXt/zTXt/iTXt chunks with a script, eXIf with GPS, XMP, an iCCP profile with text,
    a C2PA ``caBX`` chunk, and HTML and a ZIP after IEND."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Comment", SCRIPT.decode())
    info.add_text("Author", "leaked-text", zip=True)
    info.add_itxt("Description", "leaked-itxt " + SCRIPT.decode(), lang="en")
    info.add_itxt("XML:com.adobe.xmp", SECRET_XMP.decode())
    buffer = io.BytesIO()
    picture(mode=mode).save(
        buffer, "PNG", pnginfo=info, exif=gps_exif(), icc_profile=icc_with_text()
    )
    data = buffer.getvalue()
    iend = data.rindex(b"IEND") - 4
    return data[:iend] + png_chunk(b"caBX", b"c2pa-manifest-store") + data[iend:] + APPENDED


def hostile_webp(*, lossless: bool = False) -> bytes:
    """EXIF GPS, XMP, an ICC profile with text, a C2PA chunk, and bytes after the RIFF."""
    buffer = io.BytesIO()
    picture().save(
        buffer,
        "WEBP",
        lossless=lossless,
        quality=85,
        exif=gps_exif(),
        xmp=SECRET_XMP,
        icc_profile=icc_with_text(),
    )
    data = buffer.getvalue()
    chunk = b"C2PA" + struct.pack("<I", 20) + b"c2pa-manifest-store\x00"
    body = data[8:] + chunk
    return b"RIFF" + struct.pack("<I", len(body)) + body + APPENDED


def animated(fmt: str, frames: int = 300, size: tuple[int, int] = (32, 32)) -> bytes:
    """A ``frames``-frame animation (WEBP, PNG for APNG, or GIF)."""
    images = [Image.new("RGB", size, (i % 256, (7 * i) % 256, 90)) for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, fmt, save_all=True, append_images=images[1:], duration=40, loop=0)
    return buffer.getvalue()


# -- the check ---------------------------------------------------------------------------------


def assert_clean(data: bytes, expected_xmp: bytes | None) -> Image.Image:
    """Fail unless ``data`` carries nothing but its pixels and ``expected_xmp``; returns the
    re-opened image."""
    for marker in MARKERS:
        assert marker not in data, f"{marker!r} was stored"
    image = Image.open(io.BytesIO(data))
    image.load()
    assert getattr(image, "n_frames", 1) == 1
    assert not image.getexif(), "EXIF was stored"
    leftovers = set(image.info) - {"xmp", "jfif", "jfif_version", "jfif_unit", "jfif_density"}
    # What decoders report about any file (WebP's frame timing), not metadata of this one.
    leftovers -= {"dpi", "transparency", "loop", "background", "duration", "timestamp"}
    if image.format == "PNG" and expected_xmp:
        # Pillow reports the XMP iTXt chunk under its keyword as well.
        assert image.info.pop("XML:com.adobe.xmp", None) == expected_xmp.decode()
        leftovers.discard("XML:com.adobe.xmp")
    assert not leftovers, f"metadata was stored: {sorted(leftovers)}"
    assert image.info.get("xmp", b"") == (expected_xmp or b"")
    if image.format == "JPEG":
        names = [name for name, _body in image.applist]  # type: ignore[attr-defined]
        assert set(names) <= {"APP0", "APP1"}, names
        assert names.count("APP1") == (1 if expected_xmp else 0)
        assert data.endswith(b"\xff\xd9"), "bytes after the JPEG's end marker"
    elif image.format == "PNG":
        kinds = [kind for kind, _body in png_chunks(data)]
        assert set(kinds) <= {b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"iTXt", b"IEND"}, kinds
        assert kinds.count(b"iTXt") == (1 if expected_xmp else 0)
        assert data.endswith(png_chunk(b"IEND", b"")), "bytes after the PNG's IEND"
    elif image.format == "WEBP":
        kinds = [kind for kind, _body in riff_chunks(data)]
        assert set(kinds) <= {b"VP8X", b"VP8 ", b"VP8L", b"ALPH", b"XMP "}, kinds
        assert struct.unpack("<I", data[4:8])[0] + 8 == len(data), "bytes after the RIFF"
    else:
        raise AssertionError(f"stored an unexpected format {image.format}")
    return image
