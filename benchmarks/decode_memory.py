"""Peak memory of decoding results, and the quality of the clean copies that are stored.

Memory (rows I1, I2): each case runs in a fresh process that decodes four files in four
threads, as one ``complete()`` does, and reports the growth of its peak resident memory
(``ru_maxrss``) over what it held before decoding. The bound is what the pixel budget
promises per worker: three bytes-per-pixel working sets of ``MAX_IMAGE_PIXELS`` RGBA pixels
(the decoded image, its clean re-encode, one conversion copy), 3 x 4 B x 8,388,608 = 96 MiB.
Peak memory is the process's ``VmHWM`` (Linux), else ``ru_maxrss``.

Quality (row I5): the clean copy against the pixels the provider served: PSNR (dB, inf =
identical) and size change, per format and source.

``python -m benchmarks.decode_memory [--old]``; ``--old`` adds the case the issue reported
(four 6324x6324 RGBA PNGs under the old 40,000,000 pixel limit with no budget, about
1.2 GiB).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import resource
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from PIL import Image, ImageChops, ImageFilter, ImageStat

MiB = 1024 * 1024
DEFAULT_PIXELS = 8_388_608
BOUND_BYTES = 3 * 4 * DEFAULT_PIXELS


def setup_django() -> None:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(USE_I18N=False)
        django.setup()


# -- inputs ------------------------------------------------------------------------------------


def photo(size: tuple[int, int], grain: float = 0.0) -> Image.Image:
    """A smooth picture (gradients and soft shapes), with film grain when ``grain`` > 0."""
    gradient = Image.linear_gradient("L")
    red = gradient.resize(size)
    blue = gradient.transpose(Image.Transpose.ROTATE_90).resize(size)
    green = Image.radial_gradient("L").resize(size)
    image = Image.merge("RGB", (red, green, blue))
    mandel = Image.effect_mandelbrot(size, (-2.0, -1.2, 1.0, 1.2), 60).convert("RGB")
    image = Image.blend(image, mandel.filter(ImageFilter.GaussianBlur(3)), 0.35)
    if grain:
        noise = Image.effect_noise(size, 40).convert("RGB")
        image = Image.blend(image, noise, grain)
    return image


def encoded(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def write_inputs(folder: Path) -> dict[str, Path]:
    from imagen_assets.sandbox.images import ImageSpec, render_image

    big = encoded(Image.new("RGBA", (6324, 6324), (200, 30, 30, 255)), "PNG", optimize=True)
    imagen_2k = encoded(photo((2560, 1792), grain=0.1).convert("RGBA"), "PNG")
    sandbox = render_image(
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
    files = {"6324-rgba.png": big, "2560x1792-rgba.png": imagen_2k, "2816x1536.jpg": sandbox}
    paths = {}
    for name, data in files.items():
        paths[name] = folder / name
        paths[name].write_bytes(data)
    return paths


# -- one case, in a fresh process ---------------------------------------------------------------


def high_water_kib() -> int:
    """This process's peak resident memory (KiB). ``VmHWM`` belongs to the process's own
    address space, so unlike ``ru_maxrss`` it does not start from the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child(path: Path, max_pixels: int, shared_budget: bool) -> None:
    setup_django()
    from imagen_assets.imaging import ImageRejected, PixelBudget, check_image

    data = path.read_bytes()
    shared = PixelBudget()
    before = high_water_kib()
    outcomes: list[str] = []

    def one() -> None:
        try:
            check_image(
                data,
                max_pixels=max_pixels,
                thumbnail_size=400,
                budget=shared if shared_budget else PixelBudget(),
            )
            outcomes.append("stored")
        except ImageRejected:
            outcomes.append("refused")

    threads = [threading.Thread(target=one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    peak = high_water_kib()
    print(json.dumps({"before_kib": before, "peak_kib": peak, "outcomes": outcomes}))


def run_case(path: Path, max_pixels: int, shared_budget: bool) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.decode_memory", "--child", str(path)]
    command += ["--max-pixels", str(max_pixels)]
    if not shared_budget:
        command.append("--no-budget")
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(output.strip().splitlines()[-1]))


def memory(paths: dict[str, Path], old: bool) -> None:
    cases = [
        ("4x 2560x1792 RGBA PNG (Imagen 4's largest, worst mode)", "2560x1792-rgba.png", True),
        ("4x 2560x1792 RGBA PNG, no shared budget (before)", "2560x1792-rgba.png", False),
        ("4x 2816x1536 JPEG (sandbox)", "2816x1536.jpg", True),
        ("4x 6324x6324 RGBA PNG (the issue's file)", "6324-rgba.png", True),
    ]
    for label, name, shared in cases:
        report(label, paths[name], DEFAULT_PIXELS, shared)
    if old:
        report(
            "4x 6324x6324 RGBA PNG, old 40,000,000 px limit, no budget (before)",
            paths["6324-rgba.png"],
            40_000_000,
            False,
        )


def report(label: str, path: Path, max_pixels: int, shared: bool) -> None:
    result = run_case(path, max_pixels, shared)
    grown = (result["peak_kib"] - result["before_kib"]) * 1024
    outcomes = ", ".join(sorted(set(result["outcomes"])))
    print(
        f"decode {label}, {path.stat().st_size / 1024:,.0f} KiB each, 4 threads: peak RSS "
        f"{result['peak_kib'] / 1024:.0f} MiB, +{grown / MiB:.0f} MiB while decoding "
        f"({outcomes}); bound +{BOUND_BYTES / MiB:.0f} MiB: ratio {grown / BOUND_BYTES:.2f}"
    )


# -- quality -----------------------------------------------------------------------------------


def psnr(a: Image.Image, b: Image.Image) -> float:
    diff = ImageChops.difference(a.convert("RGB"), b.convert("RGB"))
    mse = sum(ImageStat.Stat(diff).sum2) / (3 * a.width * a.height)
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def quality(paths: dict[str, Path]) -> None:
    from imagen_assets.imaging import PixelBudget, Provenance, check_image

    smooth, grainy = photo((2048, 2048)), photo((2048, 2048), grain=0.3)
    sources = [
        ("JPEG sandbox 2816x1536", paths["2816x1536.jpg"].read_bytes()),
        ("JPEG q75 smooth", encoded(smooth, "JPEG", quality=75)),
        ("JPEG q90 smooth", encoded(smooth, "JPEG", quality=90)),
        ("JPEG q95 smooth", encoded(smooth, "JPEG", quality=95)),
        ("JPEG q90 grainy", encoded(grainy, "JPEG", quality=90)),
        ("JPEG q95 grainy", encoded(grainy, "JPEG", quality=95)),
        ("PNG RGB smooth", encoded(smooth, "PNG")),
        ("PNG RGBA 2560x1792", paths["2560x1792-rgba.png"].read_bytes()),
        ("WebP lossy q80 smooth", encoded(smooth, "WEBP", quality=80)),
        ("WebP lossy q90 grainy", encoded(grainy, "WEBP", quality=90)),
        ("WebP lossless smooth", encoded(smooth, "WEBP", lossless=True)),
    ]
    made_by = Provenance(model="imagen-4.0", provider="Wave")
    for label, data in sources:
        checked = check_image(
            data,
            max_pixels=DEFAULT_PIXELS,
            thumbnail_size=400,
            provenance=made_by,
            budget=PixelBudget(),
        )
        served = Image.open(io.BytesIO(data))
        stored = Image.open(io.BytesIO(checked.content))
        value = psnr(served, stored)
        shown = "identical pixels" if value == math.inf else f"PSNR {value:.1f} dB"
        print(
            f"clean copy of {label}: {shown}; size {len(checked.content) / 1024:,.0f} KiB vs "
            f"{len(data) / 1024:,.0f} KiB served, ratio {len(checked.content) / len(data):.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--old", action="store_true", help="also the issue's 1.2 GiB case")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_PIXELS, help=argparse.SUPPRESS)
    parser.add_argument("--no-budget", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.max_pixels, not args.no_budget)
        return
    setup_django()
    with tempfile.TemporaryDirectory(prefix="imagen-decode-") as folder:
        paths = write_inputs(Path(folder))
        memory(paths, args.old)
        quality(paths)


if __name__ == "__main__":
    main()
