"""No orphan files: every name is recorded before it is written, and a sweep deletes the
files no image owns.

How a file's record moves (:class:`~imagen_assets.models.StoredFile`)::

    record()      committed in its own transaction BEFORE the storage write, so a worker
                  killed mid-write leaves a record of what it may have left behind; with
                  the id of the RQ job writing it (blank outside RQ)
    adopt()       the run that stores the image deletes its files' records in the
                  transaction that gives the image their names (lifecycle.finish_image)
    remove()      a run that failed or lost a race deletes its files, then their records
                  (a file that could not be deleted keeps its record, for the sweep)
    release()     a deleted image's files are recorded again; removed once it commits
    sweep()       deletes each file that no image owns and whose record is older than
                  ``ORPHAN_GRACE``, or older than ``MIN_AGE`` with its job over; then
                  its record

The sweep works from the records only: it never lists the storage, so it never touches a
file it did not record (exports, files of other apps sharing the bucket). It never races a
write either: the grace is longer than a run of ``complete()`` may take (the job timeout),
and a record of an RQ job is taken before the grace only once Redis says that job is over
(finished, failed, stopped or cancelled: a work horse killed mid-store is marked failed by
RQ), asked after the record is held; a job Redis does not know waits for the grace. The
record is the lock between a late run and the sweep. The sweep holds a record
(``SELECT ... FOR UPDATE``, or SQLite's write lock once it deleted it) while it checks
ownership and deletes the file; :func:`adopt` deletes the same record, so it either came
first (the sweep then sees the image owning the file and keeps it) or finds the record gone
and rolls the image's change back (:class:`FilesSwept`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from imagen_assets import conf, queueing
from imagen_assets.models import GeneratedImage, StoredFile
from imagen_assets.storage import delete_files

logger = logging.getLogger(__name__)

#: Records handled per transaction by the sweep.
BATCH = 200

#: Seconds a record of an RQ job whose run is over waits before the sweep takes it (at
#: most ``ORPHAN_GRACE``): the run that wrote it ended, so there is no write to race; this
#: only keeps the reconciler from asking Redis about every run that just began.
MIN_AGE = 60


class FilesSwept(RuntimeError):
    """The files of a result were swept before the image could own them (the run took
    longer than ``ORPHAN_GRACE``); the image stays open and is stored again."""


def record(entries: Sequence[tuple[str, StoredFile.Kind, int | None]]) -> None:
    """Record each (name, kind, image id) in ``entries``, committed before returning (one
    transaction for them all), so that a write that follows is never unrecorded. Must not
    run inside a transaction (outside tests, whose transaction Django's ``TestCase`` keeps
    open)."""
    if not entries:
        return
    now = timezone.now()
    job_id = queueing.current_job_id()
    with transaction.atomic(durable=True):
        StoredFile.objects.bulk_create(
            [
                StoredFile(name=name, kind=kind, image_id=image_id, created_at=now, job_id=job_id)
                for name, kind, image_id in entries
            ]
        )


def adopt(names: Iterable[str]) -> int:
    """Delete the records of ``names``, inside the caller's transaction, which gives an
    image these file names; returns how many records there were."""
    deleted, _per_model = StoredFile.objects.filter(name__in=[n for n in names if n]).delete()
    return deleted


def remove(names: Iterable[str]) -> None:
    """Delete the files ``names`` (written by a run that will not record them on an image),
    then the records of those that are gone. One that could not be deleted (storage down)
    keeps its record: the sweep deletes it later."""
    gone = delete_files(names)
    if gone:
        StoredFile.objects.filter(name__in=gone).delete()


def forget(names: Iterable[str]) -> None:
    """Drop the records of ``names`` and leave the files alone (they are not ours)."""
    StoredFile.objects.filter(name__in=list(names)).delete()


def release(names: Sequence[str], image_id: int) -> None:
    """The image ``image_id`` is being deleted (inside its transaction): record its files
    again, so that the sweep deletes them should the delete that follows the commit fail."""
    now = timezone.now()
    kinds = (StoredFile.Kind.ORIGINAL, StoredFile.Kind.THUMBNAIL)
    StoredFile.objects.bulk_create(
        [
            StoredFile(name=name, kind=kind, image_id=image_id, created_at=now)
            for name, kind in zip(names, kinds, strict=False)
            if name
        ],
        ignore_conflicts=True,
    )


# -- the sweep -------------------------------------------------------------------------------


class Action(StrEnum):
    DELETED = "deleted"  # no image owned it: the file and its record are gone
    WOULD_DELETE = "would delete"  # the same, on a dry run: nothing changed
    OWNED = "owned"  # an image owns it: the file is kept, the record dropped
    FAILED = "failed"  # the storage could not delete it: record kept, tried next time


@dataclass(frozen=True)
class Swept:
    """What the sweep did with one recorded file."""

    name: str
    kind: str
    image_id: int | None
    recorded_at: datetime
    action: Action


def cutoff(now: datetime | None = None) -> datetime:
    """Records older than this are past their grace."""
    return (now or timezone.now()) - timedelta(seconds=float(conf.get("ORPHAN_GRACE")))


def _candidates(now: datetime) -> Q:
    """The records the sweep looks at: past their grace, or of an RQ job and older than
    :data:`MIN_AGE` (taken only if that job is over, :func:`_ready`)."""
    grace = float(conf.get("ORPHAN_GRACE"))
    early = now - timedelta(seconds=min(float(MIN_AGE), grace))
    return Q(created_at__lt=cutoff(now)) | (Q(created_at__lt=early) & ~Q(job_id=""))


def due() -> bool:
    """Whether the sweep may have work: a record past its grace, or one of an RQ job older
    than :data:`MIN_AGE` (one query; whether that job is over, the sweep asks Redis)."""
    return StoredFile.objects.filter(_candidates(timezone.now())).exists()


def _ready(records: list[StoredFile], limit: datetime) -> list[StoredFile]:
    """Of ``records`` (held), those the sweep may take: past their grace (``limit``), or
    written by an RQ job that is over (one round trip to Redis for them all)."""
    early = [r.job_id for r in records if r.created_at >= limit and r.job_id]
    over = queueing.jobs_over(early) if early else set()
    return [r for r in records if r.created_at < limit or r.job_id in over]


def _owned(names: Iterable[str], image_ids: Iterable[int | None]) -> set[str]:
    """Which of ``names`` an image row points at (its file or its thumbnail)."""
    names = set(names)
    owned: set[str] = set()
    ids = {pk for pk in image_ids if pk is not None}
    for file, thumbnail in GeneratedImage.objects.filter(pk__in=ids).values_list(
        "file", "thumbnail"
    ):
        owned.update({file, thumbnail} & names)
    rest = names - owned
    if rest:
        # Any other row, whatever the record says: a file an image points at is never
        # deleted. Only for the few candidates left (these columns have no index).
        for file, thumbnail in GeneratedImage.objects.filter(
            Q(file__in=rest) | Q(thumbnail__in=rest)
        ).values_list("file", "thumbnail"):
            owned.update({file, thumbnail} & rest)
    return owned


def sweep(*, dry_run: bool = False, now: datetime | None = None) -> Iterator[Swept]:
    """Delete every recorded file that no image owns, with its record, once the record is
    past its grace or the RQ job that wrote it is over; drop the records of owned files.
    Yields what it did with each record, a batch at a time (each batch one transaction).
    ``dry_run`` changes nothing and says what it would do.

    Safe to run at any time, also twice at once (a record held by one sweep is skipped by
    the other)."""
    now = now or timezone.now()
    limit = cutoff(now)
    candidates = _candidates(now)
    last = 0
    while True:
        with transaction.atomic():
            records = list(
                StoredFile.objects.select_for_update(skip_locked=True)
                .filter(candidates, pk__gt=last)
                .order_by("pk")[:BATCH]
            )
            if not records:
                return
            last = records[-1].pk
            # Asked once the records are held: a run that wrote one of them and was still
            # going would show as started, so "over" means no write of it can be racing.
            records = _ready(records, limit)
            if not records:
                continue
            if dry_run:
                owned = _owned((r.name for r in records), (r.image_id for r in records))
                done = [
                    (r, Action.OWNED if r.name in owned else Action.WOULD_DELETE) for r in records
                ]
            else:
                done = _sweep_batch(records)
        yield from (Swept(r.name, r.kind, r.image_id, r.created_at, action) for r, action in done)


def _sweep_batch(records: list[StoredFile]) -> list[tuple[StoredFile, Action]]:
    """Inside the caller's transaction: take the records, then (holding them) check who
    owns each file and delete the orphans; a file the storage could not delete gets its
    record back."""
    # Deleting them first takes SQLite's write lock (PostgreSQL's row locks are held
    # already): from here no image can adopt these files until this commits, so what the
    # ownership check reads next stays true.
    StoredFile.objects.filter(pk__in=[r.pk for r in records]).delete()
    owned = _owned((r.name for r in records), (r.image_id for r in records))
    orphans = [r for r in records if r.name not in owned]
    gone = set(delete_files(r.name for r in orphans))
    failed = [r for r in orphans if r.name not in gone]
    if failed:
        # Under the same ids, so this sweep's later batches do not meet them again.
        StoredFile.objects.bulk_create(failed)
    done = []
    for r in records:
        if r.name in owned:
            done.append((r, Action.OWNED))
        elif r.name in gone:
            done.append((r, Action.DELETED))
        else:
            done.append((r, Action.FAILED))
    if gone:
        logger.info("Swept %d orphan file(s)", len(gone))
    return done
