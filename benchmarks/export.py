"""Export of 200 approved 2K images: the time of the export job against a bound.

In-process, on a temporary SQLite file and local file storage: 200 distinct sandbox JPEGs
of 2816x1536 (Imagen's 2K 16:9, ``render_image``), each approved by one reviewer, then one
run of the RQ job ``exports.build_export`` (read every file from storage in chunks, hash
it, write the zip to a temporary file, save it to storage, mark the export ready). Prints
the time, the throughput, the job's growth of peak memory, and the ratio to the bound
(30 s by default).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

RATIO = "16:9"
SIZE = (2816, 1536)


def setup_django(database: Path, media: Path) -> None:
    os.environ["DATABASE_URL"] = f"sqlite:///{database}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "campaigns.settings"
    os.environ["MEDIA_ROOT"] = str(media)
    os.environ.setdefault("SECRET_KEY", "benchmark-only")
    os.environ["IMAGEN_LOG_LEVEL"] = "WARNING"
    import django

    django.setup()


def populate(count: int) -> tuple[int, int, float]:
    """Store ``count`` approved images; returns (campaign id, total bytes, seconds)."""
    from django.contrib.auth import get_user_model
    from django.core.files.base import ContentFile
    from django.utils import timezone

    from imagen_assets.models import Campaign, GeneratedImage, GenerationTask, ReviewDecision
    from imagen_assets.sandbox.images import ImageSpec, render_image
    from imagen_assets.storage import image_storage

    started = time.monotonic()
    campaign = Campaign.objects.create(name="Benchmark", slug="benchmark")
    reviewer = get_user_model().objects.create_user("reviewer")
    storage = image_storage()
    total = 0
    now = timezone.now()
    for index in range(count):
        prompt = f"Export benchmark image {index}"
        data = render_image(
            ImageSpec(
                api_label="Wave",
                aspect_ratio=RATIO,
                width=SIZE[0],
                height=SIZE[1],
                seed=index,
                prompt=prompt,
                index=0,
            )
        )
        total += len(data)
        task = GenerationTask.objects.create(
            campaign=campaign,
            provider="sandbox",
            model="imagen-4.0",
            prompt=prompt,
            aspect_ratio=RATIO,
            num_images=1,
            seed=index,
            status="succeeded",
        )
        name = storage.save(f"imagen/benchmark/{task.pk}-0.jpg", ContentFile(data))
        # Rows as review.decide leaves them (the benchmark measures the export, not review).
        image = GeneratedImage.objects.create(
            task=task,
            campaign=campaign,
            index=0,
            status="succeeded",
            review_status="approved",
            file=name,
            width=SIZE[0],
            height=SIZE[1],
            bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            content_type="image/jpeg",
            reviewed_by=reviewer,
            reviewed_at=now,
        )
        ReviewDecision.objects.create(
            image=image, round=1, decision="approve", reviewer=reviewer, reviewer_label="reviewer"
        )
    return campaign.pk, total, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--bound", type=float, default=30.0, help="Seconds.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="imagen-bench-") as work:
        return run(args, Path(work))


def run(args: argparse.Namespace, work: Path) -> int:
    setup_django(work / "db.sqlite3", work / "media")
    from django.core.management import call_command

    from imagen_assets import exports
    from imagen_assets.models import Export

    call_command("migrate", verbosity=0)
    campaign_id, total, seconds = populate(args.images)
    print(
        f"export data: {args.images} approved {SIZE[0]}x{SIZE[1]} sandbox JPEGs, "
        f"{total / 2**20:.1f} MiB on local storage, made in {seconds:.1f} s"
    )

    export = Export.objects.create(campaign_id=campaign_id)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    status = exports.build_export(export.pk)
    elapsed = time.perf_counter() - started
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    export.refresh_from_db()
    if status != "ready" or export.bytes is None:
        print(f"export failed: {export.error_message}")
        return 1
    print(
        f"export {args.images} images to a zip on local storage: {elapsed:.2f} s "
        f"({export.bytes / 2**20 / elapsed:.0f} MiB/s, zip {export.bytes / 2**20:.1f} MiB, "
        f"peak memory grew by {(rss_after - rss_before) / 1024:.1f} MiB); "
        f"bound {args.bound:g} s; ratio {elapsed / args.bound:.2f}"
    )
    return 0 if elapsed <= args.bound else 1


if __name__ == "__main__":
    sys.exit(main())
