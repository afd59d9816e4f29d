"""The whole pipeline with real parts: redis-server, `rqworker --with-scheduler` processes,
the sandbox provider over HTTP and webhooks into the live Django server."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest
from PIL import Image

from campaigns.stack import BASE_DIR
from imagen_assets import jobs, queueing, services
from imagen_assets.imagen_sizes import SIZES_1K, SIZES_2K
from imagen_assets.models import Campaign, GeneratedImage, GenerationTask, WebhookEvent
from imagen_assets.storage import image_storage
from tests.conftest import wait_for
from tests.factories import running_wavespeed_task, signed_wavespeed_headers, wait_all_finished

pytestmark = [pytest.mark.integration]


@pytest.fixture
def campaign(stack_env: dict[str, str]) -> Campaign:
    return Campaign.objects.create(
        name="Spring launch", slug="spring-launch", brand_prompt="Pastel palette."
    )


def assert_stored(image: GeneratedImage, size: tuple[int, int]) -> None:
    assert image.status == GeneratedImage.Status.SUCCEEDED, image.error_message
    storage = image_storage()  # the alias IMAGEN_ASSETS names (the example site: private)
    with storage.open(image.file.name) as handle:
        data = handle.read()
    assert hashlib.sha256(data).hexdigest() == image.sha256
    assert len(data) == image.bytes
    with Image.open(io.BytesIO(data)) as decoded:
        assert decoded.size == size
    assert (image.width, image.height) == size
    assert image.content_type == "image/jpeg"
    with storage.open(image.thumbnail.name) as handle, Image.open(handle) as thumb:
        assert max(thumb.size) <= 400


class SandboxProviderPipelineTests:
    def test_images_are_generated_stored_and_recorded(
        self, campaign: Campaign, sandbox: Any, worker: Any
    ) -> None:
        tasks = services.request_images(
            campaign=campaign, prompt="A kite over a meadow", count=6, aspect_ratio="16:9", seed=7
        )
        assert [t.num_images for t in tasks] == [4, 2]
        images = wait_all_finished(tasks)
        assert len(images) == 6
        for image in images:
            assert_stored(image, SIZES_1K["16:9"])
        for task in GenerationTask.objects.filter(pk__in=[t.pk for t in tasks]):
            assert task.status == "succeeded"
            assert task.progress == 100
            assert task.provider_task_id
            assert task.request_body["prompt"] == "A kite over a meadow\n\nPastel palette."
            assert task.attempts == 1
        assert [t.seed for t in tasks] == [7, 8]

    def test_safety_filtered_images_are_marked_withheld(
        self, campaign: Campaign, worker: Any
    ) -> None:
        tasks = services.request_images(campaign=campaign, prompt="[filter] picnic", count=3)
        images = wait_all_finished(tasks)
        statuses = [image.status for image in images]
        assert statuses.count(GeneratedImage.Status.SUCCEEDED) == 2
        assert statuses.count(GeneratedImage.Status.FILTERED) == 1
        withheld = next(i for i in images if i.status == GeneratedImage.Status.FILTERED)
        assert "withheld" in withheld.error_message

    def test_provider_failure_is_a_readable_message(self, campaign: Campaign, worker: Any) -> None:
        tasks = services.request_images(campaign=campaign, prompt="[fail] picnic", count=2)
        images = wait_all_finished(tasks)
        assert {image.status for image in images} == {GeneratedImage.Status.FAILED}
        task = GenerationTask.objects.get(pk=tasks[0].pk)
        assert task.status == "failed"
        assert task.error_message
        assert task.cost == 0

    def test_rate_limited_submit_is_retried_after_retry_after(
        self, campaign: Campaign, sandbox: Any, worker: Any
    ) -> None:
        sandbox.config.rate_limit_next = 2
        tasks = services.request_images(campaign=campaign, prompt="A lighthouse", count=1)
        images = wait_all_finished(tasks, timeout=60)
        assert images[0].status == GeneratedImage.Status.SUCCEEDED
        assert GenerationTask.objects.get(pk=tasks[0].pk).attempts == 3


class WaveProviderPipelineTests:
    def test_two_k_images_arrive_via_unsigned_callback(
        self, campaign: Campaign, sandbox: Any, worker: Any
    ) -> None:
        before = sandbox.stats["callbacks_sent"]
        tasks = services.request_images(
            campaign=campaign,
            prompt="Sunrise on a mountaintop",
            count=2,
            aspect_ratio="16:9",
            provider="wave",
        )
        images = wait_all_finished(tasks)
        for image in images:
            assert_stored(image, SIZES_2K["16:9"])
        task = GenerationTask.objects.get(pk=tasks[0].pk)
        assert task.provider_task_id.startswith("task-wave")
        assert task.request_body["model"] == "imagen-4.0"
        assert task.request_body["callback_url"].endswith("/<token>/")
        assert task.callback_token not in json.dumps(task.request_body)
        wait_for(lambda: sandbox.stats["callbacks_sent"] > before, 10, "the callback")
        wait_for(lambda: WebhookEvent.objects.filter(task=task).exists(), 10, "the event row")

    def test_polling_completes_tasks_when_callbacks_never_come(
        self, campaign: Campaign, sandbox: Any, worker: Any
    ) -> None:
        sandbox.config.drop_callbacks = True
        tasks = services.request_images(
            campaign=campaign, prompt="A quiet harbour", count=1, provider="wave"
        )
        images = wait_all_finished(tasks)
        assert images[0].status == GeneratedImage.Status.SUCCEEDED
        assert not WebhookEvent.objects.exists()
        assert GenerationTask.objects.get(pk=tasks[0].pk).polls >= 1


class WaveSpeedProviderPipelineTests:
    def test_signed_webhook_delivers_the_result(
        self, campaign: Campaign, sandbox: Any, worker: Any
    ) -> None:
        tasks = services.request_images(
            campaign=campaign,
            prompt="A city at dusk",
            count=4,
            aspect_ratio="9:16",
            provider="wavespeed",
            negative_prompt="blurry",
        )
        images = wait_all_finished(tasks)
        for image in images:
            assert_stored(image, SIZES_1K["9:16"])
        task = GenerationTask.objects.get(pk=tasks[0].pk)
        assert task.request_body["negative_prompt"] == "blurry"
        event = wait_for(
            lambda: WebhookEvent.objects.filter(provider_task_id=task.provider_task_id).first(),
            10,
            "the webhook event",
        )
        assert event.state is not None  # signed: the body itself was trusted


class WebhookIngressTests:
    """Forged and stale webhooks into the live server change nothing."""

    def _pending_task(self, campaign: Campaign) -> GenerationTask:
        return running_wavespeed_task(campaign, "abc123")

    def _post(self, live_server: Any, secret: str, body: bytes, *, age: int = 0) -> httpx.Response:
        headers = signed_wavespeed_headers(
            secret, f"evt-{time.time_ns()}", body, timestamp=int(time.time()) - age
        )
        return httpx.post(
            f"{live_server.url}/imagen/webhooks/wavespeed/", content=body, headers=headers
        )

    def test_forged_and_stale_webhooks_are_refused(
        self, campaign: Campaign, sandbox: Any, live_server: Any, settings: Any
    ) -> None:
        settings.IMAGEN_ASSETS["PROVIDERS"]["wavespeed"]["OPTIONS"]["WEBHOOK_SECRET"] = (
            sandbox.webhook_secret
        )
        task = self._pending_task(campaign)
        body = json.dumps(
            {
                "id": "abc123",
                "status": "completed",
                "outputs": ["http://127.0.0.1:1/x.jpg"],
                "has_nsfw_contents": [False],
                "error": "",
                "model": "wavespeed-ai/imagen4",
            }
        ).encode()
        forged = self._post(live_server, "whsec_not-the-secret", body)
        assert forged.status_code == 401
        stale = self._post(live_server, sandbox.webhook_secret, body, age=301)
        assert stale.status_code == 401
        unsigned = httpx.post(f"{live_server.url}/imagen/webhooks/wavespeed/", content=body)
        assert unsigned.status_code == 400
        task.refresh_from_db()
        assert task.status == "processing"
        assert not WebhookEvent.objects.exists()
        genuine = self._post(live_server, sandbox.webhook_secret, body)
        assert genuine.status_code == 200
        assert WebhookEvent.objects.count() == 1


class CommandLineTests:
    def test_generate_wait_json_then_status(self, stack_env: dict[str, str], worker: Any) -> None:
        command = [
            sys.executable,
            str(BASE_DIR / "manage.py"),
            "imagen_generate",
            "--campaign",
            "cli-test",
            "--prompt",
            "A red bicycle",
            "--count",
            "3",
            "--provider",
            "wave",
            "--aspect-ratio",
            "4:3",
            "--wait",
            "--timeout",
            "60",
            "--json",
        ]
        result = subprocess.run(command, env=stack_env, capture_output=True, text=True, timeout=90)
        assert result.returncode == 0, result.stderr
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        assert len(rows) == 3
        for row in rows:
            assert row["status"] == "succeeded"
            assert row["provider"] == "wave"
            assert row["provider_task_id"].startswith("task-wave")
            assert (row["width"], row["height"]) == SIZES_2K["4:3"]
            assert row["file"].startswith("imagen/cli-test/")
            assert row["error"] is None
            assert (row["model"], row["aspect_ratio"]) == ("imagen-4.0", "4:3")
            assert isinstance(row["seed"], int)  # chosen for us, so the image can be remade
        status = subprocess.run(
            [
                sys.executable,
                str(BASE_DIR / "manage.py"),
                "imagen_status",
                "--campaign",
                "cli-test",
                "--json",
            ],
            env=stack_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0, status.stderr
        assert [json.loads(line)["id"] for line in status.stdout.splitlines()] == [
            row["id"] for row in rows
        ]

    @staticmethod
    def generate_and_wait(env: dict[str, str], prompt: str, count: int) -> Any:
        return subprocess.run(
            [
                sys.executable,
                str(BASE_DIR / "manage.py"),
                "imagen_generate",
                "--campaign",
                "x",
                "--prompt",
                prompt,
                "--count",
                str(count),
                "--wait",
                "--timeout",
                "60",
                "--json",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )

    def test_wait_exits_non_zero_when_images_fail(
        self, stack_env: dict[str, str], worker: Any
    ) -> None:
        result = self.generate_and_wait(stack_env, "[fail] nope", 1)

        assert result.returncode != 0
        assert json.loads(result.stdout.splitlines()[0])["status"] == "failed"
        assert "did not succeed" in result.stderr

    def test_wait_exits_zero_when_images_are_only_withheld(
        self, stack_env: dict[str, str], worker: Any
    ) -> None:
        result = self.generate_and_wait(stack_env, "[filter] picnic", 3)

        statuses = sorted(json.loads(line)["status"] for line in result.stdout.splitlines())
        assert "filtered" in statuses
        assert set(statuses) <= {"succeeded", "filtered"}
        assert result.returncode == 0, result.stderr
        assert "withheld by the provider's safety filter" in result.stderr


class ReconcilerTests:
    @staticmethod
    def scheduled_runs(redis_conn: Any) -> list[str]:
        registry = queueing.get_queue().scheduled_job_registry
        return [i for i in registry.get_job_ids() if i.startswith(queueing.RECONCILE_JOB_PREFIX)]

    def test_the_periodic_run_is_started_once_and_again_after_redis_lost_it(
        self, settings: Any, redis_url: str, redis_conn: Any
    ) -> None:
        settings.RQ_QUEUES = {"default": {"URL": redis_url}}

        assert queueing.schedule_reconciler() is True
        assert queueing.schedule_reconciler() is False  # already scheduled
        (first,) = self.scheduled_runs(redis_conn)
        assert queueing.reconciler_scheduled()

        redis_conn.flushdb()  # a restart without persistence
        assert not queueing.reconciler_scheduled()
        assert queueing.schedule_reconciler() is True
        (second,) = self.scheduled_runs(redis_conn)
        assert second != first

    def test_a_finished_or_failed_run_does_not_count_as_scheduled(
        self, settings: Any, redis_url: str, redis_conn: Any
    ) -> None:
        from rq.job import Job

        settings.RQ_QUEUES = {"default": {"URL": redis_url}}
        queueing.schedule_reconciler()
        (job_id,) = self.scheduled_runs(redis_conn)
        job = Job.fetch(job_id, connection=redis_conn)
        job.set_status("failed")

        assert not queueing.reconciler_scheduled()
        assert queueing.schedule_reconciler() is True

    def test_each_run_queues_one_successor_and_a_second_chain_ends(
        self, settings: Any, redis_url: str, redis_conn: Any, db: None
    ) -> None:
        from rq import SimpleWorker

        settings.RQ_QUEUES = {"default": {"URL": redis_url}}
        settings.IMAGEN_ASSETS = {**settings.IMAGEN_ASSETS, "RECONCILE_INTERVAL": 600}
        queue = queueing.get_queue()
        # Two chains started at the same moment; Redis records the second.
        for job_id in ("a", "b"):
            queue.enqueue(jobs.reconcile, True, job_id=queueing.RECONCILE_JOB_PREFIX + job_id)
        redis_conn.set(queueing.RECONCILE_NEXT_KEY, queueing.RECONCILE_JOB_PREFIX + "b")

        SimpleWorker([queue], connection=queue.connection).work(burst=True)

        (successor,) = self.scheduled_runs(redis_conn)  # one chain goes on
        assert redis_conn.get(queueing.RECONCILE_NEXT_KEY).decode() == successor
        assert successor not in {
            queueing.RECONCILE_JOB_PREFIX + "a",
            queueing.RECONCILE_JOB_PREFIX + "b",
        }

    def test_the_worker_class_keeps_the_periodic_run_scheduled(
        self, settings: Any, redis_url: str, redis_conn: Any
    ) -> None:
        from imagen_assets.worker import Worker

        settings.RQ_QUEUES = {"default": {"URL": redis_url}}
        worker = Worker([queueing.get_queue()], connection=redis_conn)

        worker.run_maintenance_tasks()
        worker.run_maintenance_tasks()
        assert len(self.scheduled_runs(redis_conn)) == 1
        redis_conn.flushdb()
        worker.run_maintenance_tasks()
        assert len(self.scheduled_runs(redis_conn)) == 1

    def test_rows_whose_jobs_were_lost_are_finished(
        self, campaign: Campaign, settings: Any, redis_conn: Any, start_worker: Any
    ) -> None:
        tasks = services.request_images(campaign=campaign, prompt="Lost jobs", count=2)
        redis_conn.flushdb()  # Redis lost everything (restart without persistence)
        settings.IMAGEN_ASSETS["RECONCILE_AFTER"] = 0
        GenerationTask.objects.filter(pk__in=[t.pk for t in tasks]).update(
            updated_at="2000-01-01T00:00:00Z"
        )
        counts = jobs.reconcile()
        assert counts["submit"] == 1
        start_worker()
        images = wait_all_finished(tasks)
        assert all(image.status == GeneratedImage.Status.SUCCEEDED for image in images)
