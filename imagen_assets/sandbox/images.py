"""Sandbox images: Imagen's pixel sizes, the renderer, and the store that serves them.

Every image is plainly labelled as sandbox output. Rendering is cheap by construction: the
colour field is composed at 1/32 scale and upscaled, so only the upscale, the text and the
encoder touch full-size pixels (a 2K JPEG takes a few tens of milliseconds).
"""

from __future__ import annotations

import hashlib
import io
import secrets
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from imagen_assets.imagen_sizes import SIZES_1K, SIZES_2K

_EXTENSIONS = {"jpeg": "jpg", "png": "png"}
_CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png"}


def image_size(aspect_ratio: str, resolution: str) -> tuple[int, int]:
    """Pixel size ``(width, height)`` for an aspect ratio at ``"1k"`` or ``"2k"``.

    Raises ``KeyError`` for an aspect ratio outside :data:`ASPECT_RATIOS`.
    """
    table = SIZES_2K if resolution.lower() == "2k" else SIZES_1K
    return table[aspect_ratio]


@dataclass(frozen=True)
class ImageSpec:
    """Everything that determines an image's bytes; equal specs render identical bytes."""

    api_label: str
    aspect_ratio: str
    width: int
    height: int
    seed: int
    prompt: str
    index: int
    fmt: str = "jpeg"


def image_specs(
    *,
    api_label: str,
    aspect_ratio: str,
    resolution: str,
    seed: int,
    prompt: str,
    count: int,
    fmt: str,
) -> tuple[ImageSpec, ...]:
    """The specs of the ``count`` images one task produces (index 0 .. count - 1)."""
    width, height = image_size(aspect_ratio, resolution)
    return tuple(
        ImageSpec(
            api_label=api_label,
            aspect_ratio=aspect_ratio,
            width=width,
            height=height,
            seed=seed,
            prompt=prompt,
            index=index,
            fmt=fmt,
        )
        for index in range(count)
    )


# --- rendering --------------------------------------------------------------------------

# FreeType faces are not safe to share between threads, so each thread keeps its own fonts.
_fonts = threading.local()


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    cache: dict[int, ImageFont.FreeTypeFont | ImageFont.ImageFont] | None = getattr(
        _fonts, "cache", None
    )
    if cache is None:
        cache = _fonts.cache = {}
    font = cache.get(size)
    if font is None:
        font = cache[size] = ImageFont.load_default(size=size)
    return font


def _renderable(text: str) -> str:
    """Replace characters Pillow's bundled font cannot draw, so no tofu boxes appear.

    The bundled face covers little beyond ASCII: accents are stripped (``é`` -> ``e``) and
    anything else without a glyph becomes ``?``.
    """
    font = _font(32)
    missing = (font.getbbox("\uffff"), font.getlength("\uffff"))
    folded = unicodedata.normalize("NFKD", text)
    out = []
    for ch in folded:
        if unicodedata.combining(ch):
            continue
        if ch.isascii():
            out.append(ch if ch.isprintable() else " ")
        elif (font.getbbox(ch), font.getlength(ch)) == missing:
            out.append("?")
        else:
            out.append(ch)
    return "".join(out)


def _colours(spec: ImageSpec) -> tuple[tuple[int, int, int], ...]:
    digest = hashlib.sha256(f"{spec.seed}\x1f{spec.prompt}\x1f{spec.index}".encode()).digest()
    # Keep channels in a mid range so white text with a dark outline stays readable.
    palette = [
        (40 + digest[i] % 176, 40 + digest[i + 1] % 176, 40 + digest[i + 2] % 176)
        for i in (0, 3, 6)
    ]
    # The fourth triple is not a colour but three bytes that steer the layout.
    return (*palette, (digest[9], digest[10], digest[11]))


def _background(spec: ImageSpec) -> Image.Image:
    first, second, third, knobs = _colours(spec)
    small = (max(8, spec.width // 32), max(8, spec.height // 32))
    # A linear blend between two colours, in one of four directions, with an off-centre
    # radial blob of a third colour: varied enough to tell images apart at a glance.
    direction = (
        None,
        Image.Transpose.ROTATE_90,
        Image.Transpose.ROTATE_180,
        Image.Transpose.ROTATE_270,
    )[knobs[0] % 4]
    linear = Image.linear_gradient("L")
    if direction is not None:
        linear = linear.transpose(direction)
    base = Image.composite(
        Image.new("RGB", small, first), Image.new("RGB", small, second), linear.resize(small)
    )
    ox, oy = knobs[1] % 128, knobs[2] % 128
    radial = Image.radial_gradient("L").crop((ox, oy, ox + 128, oy + 128)).resize(small)
    field = Image.composite(base, Image.new("RGB", small, third), radial)
    return field.resize((spec.width, spec.height), Image.Resampling.BILINEAR)


def _fitted_line(
    draw: ImageDraw.ImageDraw, text: str, centre: tuple[float, float], size: int, max_width: float
) -> None:
    font = _font(size)
    length = font.getlength(text)
    if length > max_width:
        size = max(8, int(size * max_width / length))
        font = _font(size)
    draw.text(
        centre,
        text,
        font=font,
        anchor="mm",
        fill=(255, 255, 255),
        stroke_width=max(1, size // 14),
        stroke_fill=(0, 0, 0),
    )


def render_image(spec: ImageSpec) -> bytes:
    """Render ``spec`` and return the encoded file (JPEG quality 85, or fast PNG).

    Guarantees: exactly ``spec.width`` x ``spec.height`` pixels, RGB, and the same bytes for
    the same spec (with the same Pillow version). The picture states that it is sandbox
    output, which API produced it, its aspect ratio and size, and the start of the prompt.
    """
    image = _background(spec)
    draw = ImageDraw.Draw(image)
    w, h = spec.width, spec.height
    short = min(w, h)
    max_width = w * 0.92
    prompt = _renderable(spec.prompt.strip())
    if len(prompt) > 60:
        prompt = prompt[:57].rstrip() + "..."
    # Positions are offsets from the centre in units of the short side, so the block of
    # text looks the same in portrait and landscape.
    _fitted_line(draw, "SANDBOX", (w / 2, h / 2 - short * 0.16), short // 5, max_width)
    lines = (
        # The bundled font has no em dash, hence the plain hyphen.
        "imagen-assets sandbox - not a real AI image",
        f"{spec.api_label} · {spec.aspect_ratio} · {w}x{h}",
        f"seed {spec.seed} · image {spec.index + 1}",
        f'"{prompt}"',
    )
    for row, text in enumerate(lines):
        centre = (w / 2, h / 2 + short * (0.05 + 0.08 * row))
        _fitted_line(draw, text, centre, short // 26, max_width)
    buffer = io.BytesIO()
    if spec.fmt == "png":
        image.save(buffer, "PNG", compress_level=1)
    else:
        image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


# --- serving ----------------------------------------------------------------------------


class ImageStore:
    """Maps opaque file names to image specs and caches rendered bytes.

    Registration is cheap (no rendering); bytes are rendered on first download and kept in
    an LRU cache bounded both by entry count and by total bytes. Two threads missing the
    cache for the same spec at once may both render it; the result is identical, so that
    is harmless and cheaper than coordinating.
    """

    def __init__(self, max_entries: int = 1024, max_bytes: int = 128 * 1024 * 1024) -> None:
        self._lock = threading.Lock()
        self._specs: dict[str, ImageSpec] = {}
        self._cache: OrderedDict[ImageSpec, bytes] = OrderedDict()
        self._cached_bytes = 0
        self._max_entries = max_entries
        self._max_bytes = max_bytes

    def register(self, spec: ImageSpec) -> str:
        """Make ``spec`` downloadable; return its file name (``<32 hex>.jpg`` or ``.png``)."""
        name = f"{secrets.token_hex(16)}.{_EXTENSIONS[spec.fmt]}"
        with self._lock:
            self._specs[name] = spec
        return name

    def prepare(self, specs: Iterable[ImageSpec]) -> None:
        """Render ``specs`` ahead of their download, as a real provider generates the
        images while its task runs (the engine calls this when a task starts): the download
        is then served from the cache, as a CDN serves a finished file."""
        for spec in specs:
            with self._lock:
                if spec in self._cache:
                    continue
            self._keep(spec, render_image(spec))

    def content(self, name: str) -> tuple[bytes, str] | None:
        """Return ``(bytes, content_type)`` for a registered file name, or None if unknown."""
        with self._lock:
            spec = self._specs.get(name)
            if spec is None:
                return None
            data = self._cache.get(spec)
            if data is not None:
                self._cache.move_to_end(spec)
                return data, _CONTENT_TYPES[spec.fmt]
        data = render_image(spec)  # outside the lock: other downloads keep flowing
        self._keep(spec, data)
        return data, _CONTENT_TYPES[spec.fmt]

    def _keep(self, spec: ImageSpec, data: bytes) -> None:
        with self._lock:
            if spec not in self._cache:
                self._cache[spec] = data
                self._cached_bytes += len(data)
                while self._cache and (
                    len(self._cache) > self._max_entries or self._cached_bytes > self._max_bytes
                ):
                    _, evicted = self._cache.popitem(last=False)
                    self._cached_bytes -= len(evicted)
