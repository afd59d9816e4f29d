"""Orphan files with real parts: a real ``rqworker`` and its work horse SIGKILLed in the
middle of storing, a new worker finishing the rows, then the reconciler's sweep removing
the dead run's files once RQ marked its job failed, long before ``ORPHAN_GRACE`` (I8, I9);
which jobs Redis says are over; and, on PostgreSQL, the sweep racing a run that is taking
its files."""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection, connections, transaction

from campaigns.settings import imagen_files_root
from imagen_assets import ingest, jobs, lifecycle, orphans, queueing, services
from imagen_assets.imaging import check_image
from imagen_assets.models import Campaign, GeneratedImage, GenerationTask, StoredFile
from imagen_assets.orphans import Action
from imagen_assets.worker import _process_exists
from tests.conftest import wait_for
from tests.factories import wait_all_finished

pytestmark = [pytest.mark.integration]


@pytest.fixture
def campaign(stack_env: dict[str, str]) -> Campaign:
    return Campaign.objects.create(name="Crash landing", slug="crash-landing")


def files_on_disk(env: dict[str, str]) -> list[str]:
    root = Path(imagen_files_root(env))
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def sweep_command() -> list[dict[str, Any]]:
    out = io.StringIO()
    call_command("imagen_sweep", "--json", stdout=out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


class KilledWorkerTests:
    def test_a_worker_killed_mid_store_leaves_files_the_sweep_removes(
        self,
        campaign: Campaign,
        sandbox: Any,
        settings: Any,
        stack_env: dict[str, str],
        start_worker: Callable[..., Any],
        tmp_path: Path,
    ) -> None:
        # The worker's storage stops in the middle of the 4th thumbnail of a run (tests/
        # storages.PausingStorage): 4 originals and 3 thumbnails written, 1 half written.
        pause = tmp_path / "pause"
        pause.touch()
        reached = Path(f"{pause}.reached")
        paused_env = {
            **stack_env,
            "DJANGO_SETTINGS_MODULE": "tests.worker_settings",
            "IMAGEN_TEST_PAUSE_FILE": str(pause),
            "IMAGEN_TEST_PAUSE_AFTER": "4",
        }
        worker = start_worker(paused_env)
        [task] = services.request_images(campaign=campaign, prompt="Meteor shower", count=4)
        wait_for(reached.exists, 40, "the worker to be storing the last thumbnail")
        horse = int(reached.read_text())
        assert horse != worker.pid

        # The machine goes down: the worker's process group, and the horse, which RQ puts
        # in a group of its own (os.setpgrp), so killing the worker's group misses it.
        worker.kill()
        os.kill(horse, signal.SIGKILL)
        wait_for(lambda: not _process_exists(horse), 10, "the work horse to die")
        pause.unlink()

        left = files_on_disk(stack_env)
        assert len(left) == 8, left  # what the dead run wrote, none of it on a row
        assert sorted(StoredFile.objects.values_list("name", flat=True)) == left
        assert GeneratedImage.objects.filter(task=task).unfinished().count() == 4
        # Each record names the RQ job of the run that wrote it.
        [dead_job] = set(StoredFile.objects.values_list("job_id", flat=True))
        assert dead_job and queueing.jobs_over([dead_job]) == set()  # still "started"

        start_worker()
        settings.IMAGEN_ASSETS["RECONCILE_AFTER"] = 0
        assert jobs.reconcile()["complete"] == 1
        images = wait_all_finished([task], timeout=40)
        assert [i.status for i in images] == [GeneratedImage.Status.SUCCEEDED] * 4
        assert len(files_on_disk(stack_env)) == 16
        assert StoredFile.objects.count() == 8  # the new run's records were adopted

        # No grace override: ORPHAN_GRACE stays an hour. The new worker's maintenance
        # marks the dead horse's job failed (its worker's heartbeat lapsed), after which
        # the reconciler queues the sweep and the new worker deletes the dead run's files.
        assert settings.IMAGEN_ASSETS.get("ORPHAN_GRACE", 3600) == 3600
        owned = sorted(name for i in images for name in (i.file.name, i.thumbnail.name))
        last_reconcile = [0.0]

        def swept() -> bool:
            if time.monotonic() - last_reconcile[0] > 5:
                last_reconcile[0] = time.monotonic()
                jobs.reconcile()  # what the reconciler's chain runs every interval
            return files_on_disk(stack_env) == owned and not StoredFile.objects.exists()

        # RQ's heartbeat ttl (90 s) + its maintenance interval (30 s) + MIN_AGE, with room.
        wait_for(swept, 300, "the dead run's files to be swept")
        assert queueing.jobs_over([dead_job]) == {dead_job}  # RQ: failed
        for image in images:
            assert image.file.storage.exists(image.file.name)
            assert image.thumbnail.storage.exists(image.thumbnail.name)

    def test_the_sweep_command_deletes_them_past_the_grace(
        self,
        campaign: Campaign,
        settings: Any,
        stack_env: dict[str, str],
    ) -> None:
        """The same files from ``imagen_sweep``, a run of no RQ job: past the grace."""
        image = GeneratedImage.objects.create(
            task=GenerationTask.objects.create(
                campaign=campaign,
                provider="sandbox",
                model="m",
                prompt="p",
                aspect_ratio="1:1",
                num_images=1,
                status="succeeded",
            ),
            campaign=campaign,
            index=0,
        )
        result = ingest.store(image, _png())  # a run that dies before the image takes them
        assert set(StoredFile.objects.values_list("job_id", flat=True)) == {""}
        assert sweep_command() == []

        settings.IMAGEN_ASSETS["ORPHAN_GRACE"] = 0
        rows = sweep_command()

        assert sorted(row["name"] for row in rows) == sorted([result.file, result.thumbnail])
        assert {(row["ok"], row["action"]) for row in rows} == {(True, "deleted")}
        assert files_on_disk(stack_env) == [] and StoredFile.objects.count() == 0


class JobsOverTests:
    def test_redis_says_which_jobs_are_over(self, stack_env: dict[str, str]) -> None:
        """finished, failed, stopped, canceled are over; a job still to run or running is
        not, nor one Redis does not hold (it may have lost it while it ran)."""
        from rq.job import JobStatus

        queue = queueing.get_queue()
        ids = {}
        for status in JobStatus:
            job = queue.enqueue("imagen_assets.jobs.sweep_files")  # no worker runs here
            job.set_status(status)
            ids[status.value] = job.id

        over = queueing.jobs_over([*ids.values(), "never-queued", ""])

        assert "never-queued" not in over and "" not in over

        assert {name for name, job_id in ids.items() if job_id in over} == {
            "finished",
            "failed",
            "stopped",
            "canceled",
        }


# -- the sweep racing a run, on PostgreSQL -----------------------------------------------------


def _png() -> Any:
    from PIL import Image

    buffer = io.BytesIO()
    Image.effect_noise((32, 24), 50).convert("RGB").save(buffer, "PNG")
    return check_image(buffer.getvalue(), max_pixels=10_000, thumbnail_size=8)


def _in_thread(call: Callable[[], Any]) -> Any:
    """``call()`` on its own thread (its own database connection), started now; returns a
    future."""

    def run() -> Any:
        try:
            return call()
        finally:
            connections.close_all()

    pool = ThreadPoolExecutor(1)
    future = pool.submit(run)
    pool.shutdown(wait=False)
    return future


@pytest.mark.postgres
class SweepRaceTests:
    """The record is the lock between a run taking its files and the sweep: whichever
    holds it first wins, and no image ever points at a deleted file."""

    @pytest.fixture(autouse=True)
    def postgresql_only(self, stack_env: dict[str, str]) -> None:
        if connection.vendor != "postgresql":
            pytest.skip(
                f"row locks need PostgreSQL, the database is {connection.vendor}: "
                "run `make test-postgres`"
            )

    def _stored(self, campaign: Campaign) -> tuple[GeneratedImage, Any]:
        task = GenerationTask.objects.create(
            campaign=campaign,
            provider="sandbox",
            model="m",
            prompt="p",
            aspect_ratio="1:1",
            num_images=1,
            status="succeeded",
        )
        image = GeneratedImage.objects.create(task=task, campaign=campaign, index=0)
        return image, ingest.store(image, _png())

    def test_a_run_taking_its_files_makes_the_sweep_leave_them(
        self, campaign: Campaign, settings: Any, stack_env: dict[str, str]
    ) -> None:
        image, result = self._stored(campaign)
        settings.IMAGEN_ASSETS["ORPHAN_GRACE"] = 0
        taken, release = threading.Event(), threading.Event()

        def finish() -> bool:
            with transaction.atomic():
                won = lifecycle.finish_image(image.pk, source_url="", nsfw=False, stored=result)
                taken.set()
                release.wait(10)  # committed only after the sweep ran
            return won

        run = _in_thread(finish)
        assert taken.wait(10)
        swept = _in_thread(lambda: list(orphans.sweep())).result(10)
        release.set()

        assert run.result(10) is True
        assert swept == []  # the records were held by the run: skipped, not deleted
        image.refresh_from_db()
        assert image.file.name == result.file
        assert image.file.storage.exists(result.file)
        assert image.thumbnail.storage.exists(result.thumbnail)
        assert StoredFile.objects.count() == 0

    def test_a_sweep_holding_the_records_makes_the_late_run_store_again(
        self, campaign: Campaign, settings: Any, stack_env: dict[str, str], monkeypatch: Any
    ) -> None:
        image, result = self._stored(campaign)
        settings.IMAGEN_ASSETS["ORPHAN_GRACE"] = 0
        deleting, release = threading.Event(), threading.Event()
        real_delete_files = orphans.delete_files

        def slow_delete(names: Any) -> list[str]:
            deleting.set()
            release.wait(10)  # the run tries to take the files meanwhile
            return real_delete_files(names)

        monkeypatch.setattr(orphans, "delete_files", slow_delete)
        sweep = _in_thread(lambda: list(orphans.sweep()))
        assert deleting.wait(10)
        run = _in_thread(
            lambda: lifecycle.finish_image(image.pk, source_url="", nsfw=False, stored=result)
        )
        # The run waits for the records the sweep holds.
        wait_for(_waiting_on_a_lock, 10, "the run to wait for the sweep's row locks")
        release.set()

        assert {s.name: s.action for s in sweep.result(10)} == {
            result.file: Action.DELETED,
            result.thumbnail: Action.DELETED,
        }
        with pytest.raises(orphans.FilesSwept):
            run.result(10)
        image.refresh_from_db()
        assert image.status == GeneratedImage.Status.QUEUED and not image.file
        assert not image.file.storage.exists(result.file)


def _waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()"
        )
        return bool(cursor.fetchone()[0])
