"""The orphan-file sweep beside 100 000 stored images: its cost when there is nothing to
do, and when a batch of dead runs left files behind.

In-process, on a temporary SQLite file and local file storage: 100 000 image rows that
own their file names (no files: the sweep never reads them), 500 records of runs still
writing (inside their grace, half of them of RQ jobs: younger than ``orphans.MIN_AGE``),
and ``--orphans`` recorded files on disk that no row owns, past their grace. Prints

- the check the reconciler makes every run (``orphans.due()``) with nothing due, against
  a bound of 5 ms;
- one sweep that deletes the orphans, the time per file and the ratio to the bound
  (``--bound`` seconds for the whole sweep, 10 s by default for 2 000 files);
- the cost of the record (one committed INSERT per run of ``complete()``, up to 4 images)
  against the time of writing those images' files.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path


def setup_django(database: Path, media: Path) -> None:
    os.environ["DATABASE_URL"] = f"sqlite:///{database}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "campaigns.settings"
    os.environ["MEDIA_ROOT"] = str(media)
    os.environ.setdefault("SECRET_KEY", "benchmark-only")
    os.environ["IMAGEN_LOG_LEVEL"] = "WARNING"
    import django

    django.setup()


def populate(images: int) -> float:
    """``images`` rows that own their file names (no files on disk: never read)."""
    from django.db import transaction

    from imagen_assets.models import Campaign, GeneratedImage, GenerationTask

    started = time.monotonic()
    per_task = 4
    with transaction.atomic():
        campaign = Campaign.objects.create(name="Benchmark", slug="benchmark")
        GenerationTask.objects.bulk_create(
            (
                GenerationTask(
                    campaign=campaign,
                    provider="sandbox",
                    model="m",
                    prompt="p",
                    aspect_ratio="1:1",
                    num_images=per_task,
                    status="succeeded",
                )
                for _ in range(images // per_task)
            ),
            batch_size=5000,
        )
        task_ids = list(GenerationTask.objects.values_list("pk", flat=True))
        stem = "0123456789ab-abcdef.jpg"
        GeneratedImage.objects.bulk_create(
            (
                GeneratedImage(
                    task_id=task_id,
                    campaign=campaign,
                    index=i,
                    status="succeeded",
                    review_status="pending",
                    file=f"imagen/benchmark/{task_id}-{i}-{stem}",
                    thumbnail=f"imagen/benchmark/thumbs/{task_id}-{i}-{stem}",
                    width=1024,
                    height=1024,
                )
                for task_id in task_ids
                for i in range(per_task)
            ),
            batch_size=5000,
        )
    return time.monotonic() - started


def add_records(orphans_count: int, in_flight: int) -> None:
    """``orphans_count`` files on disk whose records are a day old, each naming an image
    that owns other files (so every ownership check goes the whole way), and
    ``in_flight`` records made just now (runs still writing)."""
    from django.core.files.base import ContentFile
    from django.utils import timezone

    from imagen_assets.models import GeneratedImage, StoredFile
    from imagen_assets.storage import image_storage

    now = timezone.now()
    old = now - timedelta(days=1)
    storage = image_storage()
    image_ids = list(GeneratedImage.objects.values_list("pk", flat=True)[:orphans_count]) or [0]
    records = []
    for n in range(orphans_count):
        kind = StoredFile.Kind.ORIGINAL if n % 2 == 0 else StoredFile.Kind.THUMBNAIL
        folder = "imagen/benchmark" if n % 2 == 0 else "imagen/benchmark/thumbs"
        name = storage.save(f"{folder}/dead-{n}.jpg", ContentFile(b"\xff\xd8" + bytes(2000)))
        records.append(
            StoredFile(name=name, kind=kind, image_id=image_ids[n % len(image_ids)], created_at=old)
        )
    records += [
        StoredFile(
            name=f"imagen/benchmark/writing-{n}.jpg",
            kind=StoredFile.Kind.ORIGINAL,
            created_at=now,
            # Half of them from RQ jobs, so the check looks at both of its conditions.
            job_id=f"benchmark-job-{n // 8}" if n % 2 else "",
        )
        for n in range(in_flight)
    ]
    StoredFile.objects.bulk_create(records, batch_size=5000)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--orphans", type=int, default=2_000)
    parser.add_argument("--bound", type=float, default=10.0, help="Seconds for the sweep.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="imagen-bench-") as work:
        return run(args, Path(work))


def run(args: argparse.Namespace, work: Path) -> int:
    setup_django(work / "db.sqlite3", work / "media")
    from django.core.management import call_command

    from imagen_assets import orphans
    from imagen_assets.models import StoredFile
    from imagen_assets.storage import image_storage, save_file

    call_command("migrate", verbosity=0)
    in_flight = 500
    seconds = populate(args.images)
    add_records(0, in_flight)
    print(
        f"sweep data: {args.images} image rows, {in_flight} records of runs still writing, "
        f"made in {seconds:.1f} s"
    )

    due_bound = 0.005
    timings = []
    for _ in range(50):
        started = time.perf_counter()
        assert not orphans.due()
        timings.append(time.perf_counter() - started)
    due = statistics.median(timings)
    print(
        f"reconciler's check with nothing due: {due * 1000:.2f} ms (median of 50); "
        f"bound {due_bound * 1000:g} ms; ratio {due / due_bound:.2f}"
    )

    StoredFile.objects.all().delete()
    add_records(args.orphans, in_flight)
    started = time.perf_counter()
    swept = list(orphans.sweep())
    elapsed = time.perf_counter() - started
    deleted = sum(1 for s in swept if s.action is orphans.Action.DELETED)
    left = StoredFile.objects.count()
    print(
        f"sweep {deleted} orphan files (of {args.orphans}) beside {args.images} images: "
        f"{elapsed:.2f} s ({elapsed / max(deleted, 1) * 1000:.2f} ms per file; "
        f"{left} records of running writes left alone); bound {args.bound:g} s; "
        f"ratio {elapsed / args.bound:.2f}"
    )

    # What recording costs a run of complete(): one committed INSERT of the names of its
    # (up to 4) images, beside writing their originals and thumbnails.
    storage = image_storage()
    record_times, write_times = [], []
    payload, thumb = b"\xff\xd8" + bytes(1_500_000), b"\xff\xd8" + bytes(30_000)
    for run_number in range(50):
        names = [
            (
                f"imagen/benchmark/r-{run_number}-{i}.jpg",
                f"imagen/benchmark/thumbs/r-{run_number}-{i}.jpg",
            )
            for i in range(4)
        ]
        started = time.perf_counter()
        orphans.record(
            [
                entry
                for original, thumbnail in names
                for entry in (
                    (original, StoredFile.Kind.ORIGINAL, None),
                    (thumbnail, StoredFile.Kind.THUMBNAIL, None),
                )
            ]
        )
        record_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        for original, thumbnail in names:
            save_file(original, payload)
            save_file(thumbnail, thumb)
        write_times.append(time.perf_counter() - started)
        for original, thumbnail in names:
            storage.delete(original)
            storage.delete(thumbnail)
    record, write = statistics.median(record_times), statistics.median(write_times)
    print(
        f"recording a run's 4 images before writing them (one committed INSERT, SQLite "
        f"file): {record * 1000:.2f} ms; writing their 1.5 MB originals and thumbnails to "
        f"local disk: {write * 1000:.2f} ms; ratio {record / write:.2f} (median of 50)"
    )
    ok = deleted == args.orphans and left == in_flight and elapsed <= args.bound
    return 0 if ok and due <= due_bound else 1


if __name__ == "__main__":
    sys.exit(main())
