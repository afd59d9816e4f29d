"""Per-image cost of storing a result, against a bare JPEG decode of the same bytes.

What complete() does to each downloaded output after the network: full decode under the
pixel limit, the clean copy written again from the pixels (imaging.py), SHA-256, thumbnail,
and writing the clean original + thumbnail to storage (local files here). Prints medians
and the ratio to the bare decode (Image.open + load).
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time

from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage
from PIL import Image

from imagen_assets.imaging import check_image
from imagen_assets.sandbox.images import ImageSpec, render_image


def median_ms(fn, runs: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    import django
    from django.conf import settings

    settings.configure()
    django.setup()
    data = render_image(
        ImageSpec(
            api_label="Wave",
            prompt="benchmark",
            aspect_ratio="16:9",
            width=2816,
            height=1536,
            seed=1,
            index=0,
        )
    )
    storage = FileSystemStorage(location=tempfile.mkdtemp(prefix="imagen-bench-"))

    def bare() -> None:
        with Image.open(io.BytesIO(data)) as image:
            image.load()

    def full() -> None:
        checked = check_image(data, max_pixels=8_388_608, thumbnail_size=400)
        storage.save("a.jpg", ContentFile(checked.content))
        storage.save("a-thumb.jpg", ContentFile(checked.thumbnail))

    bare_ms, full_ms = median_ms(bare, args.runs), median_ms(full, args.runs)
    print(
        f"complete() per image, 2816x1536 JPEG ({len(data) / 1024:.0f} KiB), median of "
        f"{args.runs}: {full_ms:.1f} ms (decode + clean copy + sha256 + thumbnail + store 2 "
        f"files); bare decode {bare_ms:.1f} ms; ratio {full_ms / bare_ms:.2f}"
    )


if __name__ == "__main__":
    main()
