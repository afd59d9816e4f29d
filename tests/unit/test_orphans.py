"""No orphan files (imagen_assets.orphans): names recorded before they are written, adopted
by the image that takes them, removed by runs that fail; the sweep deletes the rest, and
only the rest (I8, I9)."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import FileSystemStorage, default_storage
from django.core.management import CommandError, call_command
from django.utils import timezone
from unit_helpers import image_bytes, make_campaign, make_task

from imagen_assets import exports, ingest, jobs, orphans, queueing
from imagen_assets.downloads import Downloaded
from imagen_assets.imaging import check_image
from imagen_assets.jobs import Did, Outcome
from imagen_assets.models import Export, GeneratedImage, GenerationTask, StoredFile
from imagen_assets.orphans import Action
from tests.faulty_storages import DiskFullStorage

pytestmark = pytest.mark.django_db


def files_on_disk(tmp_path: Path) -> list[str]:
    media = tmp_path / "media"
    return sorted(str(p.relative_to(media)) for p in media.rglob("*") if p.is_file())


def checked_png() -> Any:
    return check_image(image_bytes("PNG", (20, 10)), max_pixels=10_000, thumbnail_size=8)


def succeeded_task(num_images: int = 1) -> GenerationTask:
    task = make_task(make_campaign(), status="succeeded", num_images=num_images)
    GenerationTask.objects.filter(pk=task.pk).update(
        outputs=[{"url": f"https://cdn.test/{i}.png", "nsfw": False} for i in range(num_images)]
    )
    return task


@pytest.fixture
def cdn_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every output downloads as a small PNG."""
    monkeypatch.setattr(
        ingest, "download", lambda url, **kw: Downloaded(image_bytes("PNG"), "image/png", url)
    )


def age_records(seconds: float) -> None:
    StoredFile.objects.update(created_at=timezone.now() - timedelta(seconds=seconds))


def sweep(**kwargs: Any) -> dict[str, Action]:
    return {swept.name: swept.action for swept in orphans.sweep(**kwargs)}


class RecordTests:
    def test_each_name_is_recorded_before_its_file_is_written(self, monkeypatch) -> None:
        image = make_task(make_campaign(), status="succeeded").images.get()
        seen: list[tuple[str, list[str]]] = []
        real_save = ingest.save_file

        def save(name: str, content: bytes) -> str:
            seen.append((name, sorted(StoredFile.objects.values_list("name", flat=True))))
            return real_save(name, content)

        monkeypatch.setattr(ingest, "save_file", save)

        result = ingest.store(image, checked_png())

        both = sorted([result.file, result.thumbnail])
        assert seen == [(result.file, both), (result.thumbnail, both)]
        kinds = dict(StoredFile.objects.values_list("name", "kind"))
        assert kinds == {result.file: "original", result.thumbnail: "thumbnail"}
        assert set(StoredFile.objects.values_list("image_id", flat=True)) == {image.pk}
        assert result.recorded

    def test_a_run_records_every_name_before_it_writes_any_file(
        self, cdn_bytes: None, enqueued: Any, monkeypatch
    ) -> None:
        task = succeeded_task(num_images=3)
        recorded_at_first_write: list[int] = []
        real_save = ingest.save_file

        def save(name: str, content: bytes) -> str:
            if not recorded_at_first_write:
                recorded_at_first_write.append(StoredFile.objects.count())
            return real_save(name, content)

        monkeypatch.setattr(ingest, "save_file", save)

        assert jobs.complete(task.pk) == Outcome(Did.STORED, stored=3)
        assert recorded_at_first_write == [6]

    @pytest.mark.django_db(transaction=True)
    def test_recording_commits_on_its_own_and_refuses_a_callers_transaction(self) -> None:
        """The record must be committed before the write: inside a transaction of the
        caller's, which might roll it back, it refuses to run (tests in Django's TestCase
        aside)."""
        from django.db import transaction

        with transaction.atomic(), pytest.raises(RuntimeError, match="durable"):
            orphans.record([("imagen/x/a.png", StoredFile.Kind.ORIGINAL, None)])
        orphans.record([("imagen/x/a.png", StoredFile.Kind.ORIGINAL, None)])
        assert StoredFile.objects.get().name == "imagen/x/a.png"

    def test_a_stored_image_adopts_its_records(self, cdn_bytes, enqueued, tmp_path) -> None:
        task = succeeded_task(num_images=2)

        assert jobs.complete(task.pk) == Outcome(Did.STORED, stored=2)

        assert StoredFile.objects.count() == 0  # the table holds only files nobody owns
        assert len(files_on_disk(tmp_path)) == 4

    def test_the_loser_of_a_race_removes_its_files_and_their_records(self, tmp_path) -> None:
        image = make_task(make_campaign(), status="succeeded").images.get()
        result = ingest.store(image, checked_png())

        ingest.discard(result)

        assert files_on_disk(tmp_path) == []
        assert StoredFile.objects.count() == 0

    def test_a_file_the_storage_could_not_delete_keeps_its_record(self, monkeypatch) -> None:
        image = make_task(make_campaign(), status="succeeded").images.get()
        result = ingest.store(image, checked_png())

        def storage_down(storage: Any, name: str) -> None:
            raise ConnectionError("storage down")

        monkeypatch.setattr(FileSystemStorage, "delete", storage_down)
        ingest.discard(result)

        assert StoredFile.objects.count() == 2  # for the sweep


class DiskFullTests:
    """I8: a thumbnail save failing with ENOSPC (a real storage class, writing half the
    bytes before the error, as a full disk does) leaves no file and no record."""

    @pytest.fixture
    def full_disk(self, settings: Any, tmp_path: Path) -> None:
        DiskFullStorage.writes = 0
        settings.STORAGES = {
            **settings.STORAGES,
            "default": {"BACKEND": "tests.faulty_storages.DiskFullStorage"},
        }

    def test_store_leaves_neither_the_original_nor_the_partial_thumbnail(
        self, full_disk: None, tmp_path: Path
    ) -> None:
        image = make_task(make_campaign(), status="succeeded").images.get()

        with pytest.raises(OSError, match="No space left"):
            ingest.store(image, checked_png())

        assert DiskFullStorage.writes == 2
        assert files_on_disk(tmp_path) == []
        assert StoredFile.objects.count() == 0

    def test_complete_keeps_the_image_open_with_no_file_left(
        self, full_disk: None, cdn_bytes: None, enqueued: Any, tmp_path: Path
    ) -> None:
        task = succeeded_task()

        assert jobs.complete(task.pk) == Outcome(Did.STORED, retrying=1)

        assert files_on_disk(tmp_path) == []
        assert StoredFile.objects.count() == 0
        image = GeneratedImage.objects.get(task=task)
        assert image.status == "queued" and not image.file
        # The next run finds the disk writable again and stores it once.
        assert jobs.complete(task.pk) == Outcome(Did.STORED, stored=1)
        image.refresh_from_db()
        assert files_on_disk(tmp_path) == sorted([image.file.name, image.thumbnail.name])


class RefusedNameTests:
    """Item 11: a file name the storage refuses (SuspiciousFileOperation) fails the image
    at once with the reason, instead of being retried as if the storage were down."""

    def test_a_path_outside_the_storage_fails_the_image_at_once(
        self, settings: Any, cdn_bytes: None, enqueued: Any, tmp_path: Path
    ) -> None:
        settings.IMAGEN_ASSETS = {**settings.IMAGEN_ASSETS, "UPLOAD_PREFIX": "../escape"}
        task = succeeded_task()

        assert jobs.complete(task.pk) == Outcome(Did.STORED)

        image = GeneratedImage.objects.get(task=task)
        assert image.status == "failed"
        assert image.error_message.startswith(
            "Could not store the image: the storage refused its file name ("
        )
        assert "path traversal" in image.error_message
        assert enqueued == []  # not tried again
        assert StoredFile.objects.count() == 0
        assert not (tmp_path / "escape").exists()

    def test_a_refusal_when_writing_fails_the_image_and_leaves_nothing(
        self, monkeypatch, cdn_bytes: None, enqueued: Any, tmp_path: Path
    ) -> None:
        from django.core.exceptions import SuspiciousFileOperation

        def refuse(name: str, content: bytes) -> str:
            raise SuspiciousFileOperation(
                f"Storage can not find an available filename for {name!r}."
            )

        monkeypatch.setattr(ingest, "save_file", refuse)
        task = succeeded_task()

        assert jobs.complete(task.pk) == Outcome(Did.STORED)

        image = GeneratedImage.objects.get(task=task)
        assert image.status == "failed"
        assert "storage refused its file name" in image.error_message
        assert enqueued == []
        assert StoredFile.objects.count() == 0

    def test_a_name_longer_than_the_field_is_refused(
        self, settings: Any, cdn_bytes: None, enqueued: Any
    ) -> None:
        settings.IMAGEN_ASSETS = {**settings.IMAGEN_ASSETS, "UPLOAD_PREFIX": "x" * 280}
        task = succeeded_task()

        jobs.complete(task.pk)

        image = GeneratedImage.objects.get(task=task)
        assert image.status == "failed"
        assert "longer than 300 characters" in image.error_message
        assert enqueued == []


class SweepTests:
    def _orphan(self) -> Any:
        """The files a run wrote before it died: recorded, on disk, owned by nobody."""
        image = make_task(make_campaign(), status="succeeded").images.get()
        return image, ingest.store(image, checked_png())

    def test_deletes_old_unowned_files_and_their_records(self, tmp_path: Path) -> None:
        _image, result = self._orphan()
        age_records(3601)

        assert sweep() == {result.file: Action.DELETED, result.thumbnail: Action.DELETED}

        assert files_on_disk(tmp_path) == []
        assert StoredFile.objects.count() == 0

    def test_leaves_a_file_recorded_a_moment_ago_whose_row_has_not_committed(
        self, tmp_path: Path
    ) -> None:
        """C: a run still writing (its image row not updated yet) is never raced."""
        _image, result = self._orphan()
        age_records(3599)  # ORPHAN_GRACE is 3600

        assert sweep() == {}
        assert sweep(now=timezone.now() + timedelta(seconds=2)) == {
            result.file: Action.DELETED,
            result.thumbnail: Action.DELETED,
        }

    def test_keeps_a_file_an_image_owns_and_drops_its_record(self, tmp_path: Path) -> None:
        image, result = self._orphan()
        GeneratedImage.objects.filter(pk=image.pk).update(
            file=result.file, thumbnail=result.thumbnail, status="succeeded"
        )
        age_records(4000)

        assert sweep() == {result.file: Action.OWNED, result.thumbnail: Action.OWNED}

        assert files_on_disk(tmp_path) == sorted([result.file, result.thumbnail])
        assert StoredFile.objects.count() == 0

    def test_keeps_a_file_another_row_owns_whatever_the_record_says(self, tmp_path) -> None:
        _image, result = self._orphan()
        other = make_task(make_campaign("autumn"), status="succeeded").images.get()
        GeneratedImage.objects.filter(pk=other.pk).update(file=result.file)
        age_records(4000)

        assert sweep() == {result.file: Action.OWNED, result.thumbnail: Action.DELETED}
        assert files_on_disk(tmp_path) == [result.file]

    def test_never_touches_exports(self, settings: Any, tmp_path: Path) -> None:
        """Exports live in the same storage but are never recorded, so never swept."""
        image, result = self._orphan()
        export = Export.objects.create(campaign=image.campaign)
        name = default_storage.save(exports.export_file_name(export), io.BytesIO(b"PK\x05\x06"))
        unrecorded = default_storage.save("imagen/spring/not-ours.jpg", io.BytesIO(b"x"))
        age_records(10**6)

        swept = sweep()

        assert set(swept) == {result.file, result.thumbnail}
        assert files_on_disk(tmp_path) == sorted([name, unrecorded])
        assert name.startswith("imagen/spring/exports/")

    def test_a_file_the_storage_cannot_delete_is_tried_again_next_time(
        self, monkeypatch, tmp_path: Path
    ) -> None:
        _image, result = self._orphan()
        age_records(4000)
        real_delete = FileSystemStorage.delete

        def flaky(storage: Any, name: str) -> None:
            if name == result.thumbnail:
                raise ConnectionError("storage down")
            real_delete(storage, name)

        monkeypatch.setattr(FileSystemStorage, "delete", flaky)
        assert sweep() == {result.file: Action.DELETED, result.thumbnail: Action.FAILED}
        assert list(StoredFile.objects.values_list("name", flat=True)) == [result.thumbnail]

        monkeypatch.setattr(FileSystemStorage, "delete", real_delete)
        assert sweep() == {result.thumbnail: Action.DELETED}
        assert files_on_disk(tmp_path) == []

    def test_a_record_of_a_name_the_storage_refuses_is_dropped(self, tmp_path: Path) -> None:
        """The storage never wrote a file under a name it refuses, so there is nothing to
        delete: the record goes instead of failing at every sweep."""
        orphans.record([("../outside.jpg", StoredFile.Kind.ORIGINAL, None)])
        (tmp_path / "outside.jpg").write_bytes(b"not the app's")
        age_records(4000)

        assert sweep() == {"../outside.jpg": Action.DELETED}
        assert StoredFile.objects.count() == 0
        assert (tmp_path / "outside.jpg").exists()

    def test_a_dry_run_changes_nothing(self, tmp_path: Path) -> None:
        _image, result = self._orphan()
        age_records(4000)

        assert sweep(dry_run=True) == {
            result.file: Action.WOULD_DELETE,
            result.thumbnail: Action.WOULD_DELETE,
        }
        assert len(files_on_disk(tmp_path)) == 2
        assert StoredFile.objects.count() == 2

    def test_goes_through_more_records_than_one_batch(self, monkeypatch, tmp_path) -> None:
        monkeypatch.setattr(orphans, "BATCH", 3)
        names = [
            default_storage.save(f"imagen/spring/o{i}.jpg", io.BytesIO(b"x")) for i in range(7)
        ]
        orphans.record([(n, StoredFile.Kind.ORIGINAL, None) for n in names])
        age_records(4000)

        assert sweep() == dict.fromkeys(names, Action.DELETED)
        assert files_on_disk(tmp_path) == []

    def test_an_image_whose_files_were_swept_first_is_stored_again(
        self, cdn_bytes: None, enqueued: Any, monkeypatch, tmp_path: Path
    ) -> None:
        """A run slower than the grace: the sweep took its files before the image did. The
        image is not given names whose files are gone; it stays open and is stored again."""
        task = succeeded_task()
        real_keep = ingest.keep

        def slow_keep(image: GeneratedImage, checked: Any, names: Any = None) -> Any:
            result = real_keep(image, checked, names)
            age_records(4000)
            assert len(list(orphans.sweep())) == 2
            return result

        monkeypatch.setattr(ingest, "keep", slow_keep)
        assert jobs.complete(task.pk) == Outcome(Did.STORED, retrying=1)

        image = GeneratedImage.objects.get(task=task)
        assert image.status == "queued" and not image.file
        assert "took too long" in image.error_message
        assert files_on_disk(tmp_path) == []


class DeletedImageTests:
    def test_deleting_an_image_deletes_its_files_and_leaves_no_record(
        self, cdn_bytes, enqueued, tmp_path, django_capture_on_commit_callbacks
    ) -> None:
        task = succeeded_task()
        jobs.complete(task.pk)
        image = GeneratedImage.objects.get(task=task)

        with django_capture_on_commit_callbacks(execute=True):
            image.delete()

        assert files_on_disk(tmp_path) == []
        assert StoredFile.objects.count() == 0

    def test_files_of_a_deleted_image_the_storage_kept_are_swept_later(
        self, cdn_bytes, enqueued, monkeypatch, tmp_path, django_capture_on_commit_callbacks
    ) -> None:
        task = succeeded_task()
        jobs.complete(task.pk)
        image = GeneratedImage.objects.get(task=task)
        names = sorted([image.file.name, image.thumbnail.name])
        real_delete = FileSystemStorage.delete

        def storage_down(storage: Any, name: str) -> None:
            raise ConnectionError("storage down")

        monkeypatch.setattr(FileSystemStorage, "delete", storage_down)
        with django_capture_on_commit_callbacks(execute=True):
            image.delete()
        assert files_on_disk(tmp_path) == names

        monkeypatch.setattr(FileSystemStorage, "delete", real_delete)
        age_records(4000)
        assert sweep() == dict.fromkeys(names, Action.DELETED)
        assert files_on_disk(tmp_path) == []


class FinishedRunTests:
    """A record of an RQ job whose run is over is swept before the grace; a run that may
    still be writing (started, queued, or a job Redis lost) waits for the grace."""

    @pytest.fixture
    def jobs_over(self, monkeypatch: pytest.MonkeyPatch) -> list[set[str]]:
        """queueing.jobs_over, strict: answers for the jobs of ``self.over``, fails on a
        question it was not expected to get (records past their grace, or without a job)."""
        asked: list[set[str]] = []

        def over(job_ids: Any) -> set[str]:
            ids = set(job_ids)
            assert ids and ids <= self.known, f"unexpected question for jobs {ids}"
            asked.append(ids)
            return ids & self.over

        monkeypatch.setattr(queueing, "jobs_over", over)
        return asked

    known: set[str] = set()
    over: set[str] = set()

    def _orphan(self, monkeypatch: pytest.MonkeyPatch, job_id: str) -> Any:
        """What a run of the RQ job ``job_id`` wrote before it died."""
        with monkeypatch.context() as patch:
            patch.setattr(queueing, "current_job_id", lambda: job_id)
            image = make_task(make_campaign(job_id), status="succeeded").images.get()
            return ingest.store(image, checked_png())

    def test_a_record_of_a_job_that_is_over_goes_before_the_grace(
        self,
        monkeypatch: pytest.MonkeyPatch,
        jobs_over: list[set[str]],
        tmp_path: Path,
        enqueued: Any,
    ) -> None:
        self.known, self.over = {"job-dead", "job-running"}, {"job-dead"}
        dead = self._orphan(monkeypatch, "job-dead")
        running = self._orphan(monkeypatch, "job-running")
        assert set(StoredFile.objects.values_list("job_id", flat=True)) == {
            "job-dead",
            "job-running",
        }
        age_records(orphans.MIN_AGE + 1)
        assert orphans.due()
        assert jobs.reconcile()["sweep"] == 1
        assert [c.func for c in enqueued] == [jobs.sweep_files]

        assert sweep() == {dead.file: Action.DELETED, dead.thumbnail: Action.DELETED}
        assert jobs_over == [{"job-dead", "job-running"}]  # one question per batch
        assert files_on_disk(tmp_path) == sorted([running.file, running.thumbnail])
        assert sorted(StoredFile.objects.values_list("name", flat=True)) == sorted(
            [running.file, running.thumbnail]
        )

    def test_the_real_statuses_that_count_as_over(self) -> None:
        assert {s.value for s in queueing.OVER} == {"finished", "failed", "stopped", "canceled"}

    def test_a_job_still_running_queued_or_unknown_waits_for_the_grace(
        self, monkeypatch: pytest.MonkeyPatch, jobs_over: list[set[str]], tmp_path: Path
    ) -> None:
        self.known, self.over = {"job-started", "job-queued", "job-lost"}, set()
        results = [self._orphan(monkeypatch, job) for job in sorted(self.known)]
        age_records(3599)  # ORPHAN_GRACE is 3600

        assert sweep() == {}
        assert len(jobs_over) == 1
        assert len(files_on_disk(tmp_path)) == 6 and StoredFile.objects.count() == 6

        jobs_over.clear()
        later = timezone.now() + timedelta(seconds=2)
        assert sweep(now=later) == {
            name: Action.DELETED for r in results for name in (r.file, r.thumbnail)
        }
        assert jobs_over == []  # past the grace: Redis is not asked
        assert files_on_disk(tmp_path) == []

    def test_a_record_younger_than_the_minimum_age_is_not_looked_at(
        self, monkeypatch: pytest.MonkeyPatch, jobs_over: list[set[str]], enqueued: Any
    ) -> None:
        self.known, self.over = {"job-dead"}, {"job-dead"}
        self._orphan(monkeypatch, "job-dead")
        age_records(orphans.MIN_AGE - 5)

        assert not orphans.due()
        assert jobs.reconcile()["sweep"] == 0
        assert sweep() == {}
        assert jobs_over == []

    def test_a_record_without_a_job_waits_for_the_grace_without_asking_redis(
        self, jobs_over: list[set[str]]
    ) -> None:
        """A management command's run (no RQ job): the grace as before."""
        self.known, self.over = set(), set()
        image = make_task(make_campaign(), status="succeeded").images.get()
        ingest.store(image, checked_png())
        assert StoredFile.objects.filter(job_id="").count() == 2
        age_records(3000)

        assert not orphans.due()
        assert sweep() == {}
        assert jobs_over == []

    def test_an_owned_file_of_a_finished_job_is_kept(
        self, monkeypatch: pytest.MonkeyPatch, jobs_over: list[set[str]]
    ) -> None:
        self.known, self.over = {"job-done"}, {"job-done"}
        result = self._orphan(monkeypatch, "job-done")
        image = GeneratedImage.objects.get(task__campaign__slug="job-done")
        GeneratedImage.objects.filter(pk=image.pk).update(
            file=result.file, thumbnail=result.thumbnail
        )
        age_records(orphans.MIN_AGE + 1)

        assert sweep() == {result.file: Action.OWNED, result.thumbnail: Action.OWNED}
        assert default_storage.exists(result.file)


class SweepJobTests:
    def test_the_reconciler_queues_the_sweep_only_when_a_record_is_past_its_grace(
        self, enqueued: Any
    ) -> None:
        image = make_task(make_campaign(), status="succeeded").images.get()
        ingest.store(image, checked_png())

        assert jobs.reconcile()["sweep"] == 0
        age_records(4000)
        assert jobs.reconcile()["sweep"] == 1
        assert [c.func for c in enqueued] == [jobs.sweep_files]

    def test_the_job_counts_what_it_did(self, tmp_path: Path) -> None:
        image = make_task(make_campaign(), status="succeeded").images.get()
        ingest.store(image, checked_png())
        age_records(4000)

        assert jobs.sweep_files() == {"deleted": 2, "owned": 0, "failed": 0}
        assert files_on_disk(tmp_path) == []


class SweepCommandTests:
    def _orphan(self) -> Any:
        image = make_task(make_campaign(), status="succeeded").images.get()
        result = ingest.store(image, checked_png())
        age_records(4000)
        return image, result

    def test_json_lines_one_per_file(self, tmp_path: Path) -> None:
        image, result = self._orphan()
        out = io.StringIO()

        call_command("imagen_sweep", "--json", stdout=out)

        rows = [json.loads(line) for line in out.getvalue().splitlines()]
        assert [(r["name"], r["ok"], r["action"], r["image"]) for r in rows] == [
            (result.file, True, "deleted", image.pk),
            (result.thumbnail, True, "deleted", image.pk),
        ]
        assert [r["kind"] for r in rows] == ["original", "thumbnail"]
        assert files_on_disk(tmp_path) == []

    def test_dry_run_says_what_it_would_delete(self, tmp_path: Path) -> None:
        _image, result = self._orphan()
        out = io.StringIO()

        call_command("imagen_sweep", "--dry-run", stdout=out)

        assert f"Would delete {result.file} (no image owns it)." in out.getvalue()
        assert "Dry run: 2 orphan file(s) would be deleted" in out.getvalue()
        assert len(files_on_disk(tmp_path)) == 2

    def test_exits_1_when_a_file_could_not_be_deleted(self, monkeypatch) -> None:
        _image, result = self._orphan()

        def storage_down(storage: Any, name: str) -> None:
            raise ConnectionError("storage down")

        monkeypatch.setattr(FileSystemStorage, "delete", storage_down)
        out, err = io.StringIO(), io.StringIO()

        with pytest.raises(CommandError) as raised:
            call_command("imagen_sweep", "--json", stdout=out, stderr=err)

        assert raised.value.returncode == 1
        rows = [json.loads(line) for line in out.getvalue().splitlines()]
        assert [(r["name"], r["ok"], r["action"]) for r in rows] == [
            (result.file, False, "failed"),
            (result.thumbnail, False, "failed"),
        ]
        assert "it will be tried again" in rows[0]["error"]
        assert StoredFile.objects.count() == 2
