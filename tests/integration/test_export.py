"""Exports built by a real ``rqworker`` (the example site, configured from the environment):
on local files, and on S3 (a real SeaweedFS gateway, the zip read back with boto3, not
through Django)."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.files.base import ContentFile
from django.urls import reverse

from campaigns.settings import imagen_files_root
from imagen_assets import exports, review
from imagen_assets.activity import Actor
from imagen_assets.imagen_sizes import SIZES_1K
from imagen_assets.models import Activity, Campaign, Export, GeneratedImage, GenerationTask
from imagen_assets.sandbox.images import ImageSpec, render_image
from imagen_assets.storage import image_storage
from tests.conftest import wait_for
from tests.integration import test_s3

pytestmark = pytest.mark.integration

# The S3 parts of test_s3.py, shared as they are (a SeaweedFS of this module's own).
s3_endpoint = test_s3.s3_endpoint
s3_bucket = test_s3.s3_bucket
s3_env = test_s3.s3_env


def user_with(username: str, *codenames: str) -> Any:
    user = get_user_model().objects.create_user(username, is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="imagen_assets", codename__in=codenames)
    )
    return get_user_model().objects.get(pk=user.pk)


def approved_images(campaign: Campaign, count: int) -> list[GeneratedImage]:
    """``count`` sandbox JPEGs in the images' storage (16:9 at 1K), each approved, plus
    one rejected image that must stay out of the zip."""
    reviewer = Actor.of(user_with("rita", "approve_generatedimage", "reject_generatedimage"))
    width, height = SIZES_1K["16:9"]
    made = []
    for index in range(count + 1):
        data = render_image(
            ImageSpec(
                api_label="Sandbox",
                aspect_ratio="16:9",
                width=width,
                height=height,
                seed=index,
                prompt=f"Leaves on a path {index}",
                index=0,
            )
        )
        task = GenerationTask.objects.create(
            campaign=campaign,
            provider="sandbox",
            model="imagen-4.0",
            prompt=f"Leaves on a path {index}",
            aspect_ratio="16:9",
            num_images=1,
            seed=index,
            status="succeeded",
        )
        image = GeneratedImage(task=task, campaign=campaign, index=0, status="succeeded")
        # Through image_storage(), the live one: the file field's own storage is the one
        # of the settings when the models were loaded, not the S3 storage of the test.
        image.file.name = image_storage().save(
            f"imagen/{campaign.slug}/{task.pk}-0.jpg", ContentFile(data)
        )
        image.width, image.height = width, height
        image.bytes, image.content_type = len(data), "image/jpeg"
        image.sha256 = hashlib.sha256(data).hexdigest()
        image.save()
        made.append(image)
    for image in made[:count]:
        review.decide(image.pk, "approve", reviewer)
    review.decide(made[count].pk, "reject", reviewer, note="off brand")
    return made[:count]


def built(export: Export, timeout: float = 60.0) -> Export:
    """Wait until the worker has finished ``export``; it must be ready."""
    wait_for(
        lambda: Export.objects.get(pk=export.pk).status != Export.Status.QUEUED,
        timeout,
        "the worker to build the export",
    )
    export.refresh_from_db()
    assert export.status == Export.Status.READY, export.error_message
    return export


def check_zip(data: bytes, campaign: Campaign, originals: dict[str, bytes]) -> None:
    """The zip holds exactly ``originals`` (member name -> stored bytes) and manifests whose
    hashes match them."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        assert sorted(names) == sorted([*originals, "manifest.csv", "manifest.json"])
        for name, content in originals.items():
            assert archive.read(name) == content, name
        manifest = json.loads(archive.read("manifest.json"))
    assert manifest["campaign"]["slug"] == campaign.slug
    assert {row["file"]: row["sha256"] for row in manifest["images"]} == {
        name: hashlib.sha256(content).hexdigest() for name, content in originals.items()
    }


class LocalExportTests:
    def test_a_worker_builds_the_zip_of_the_approved_images(
        self, stack_env: dict[str, str], start_worker: Any
    ) -> None:
        start_worker()
        campaign = Campaign.objects.create(name="Autumn sale", slug="autumn-sale")
        images = approved_images(campaign, 3)
        exporter = user_with("ed", "export_campaign")

        export = built(exports.request_export(campaign.pk, Actor.of(exporter)))

        path = Path(imagen_files_root(stack_env)) / export.file_name
        assert export.file_name.startswith(
            f"imagen/autumn-sale/exports/autumn-sale-approved-{export.pk}-"
        )
        assert export.bytes == path.stat().st_size
        assert sorted(export.image_ids) == sorted(image.pk for image in images)
        originals = {
            f"autumn-sale-16x9-{image.pk}.jpg": (
                Path(imagen_files_root(stack_env)) / image.file.name
            ).read_bytes()
            for image in images
        }
        check_zip(path.read_bytes(), campaign, originals)
        [logged] = Activity.objects.filter(verb=Activity.Verb.EXPORTED)
        assert logged.actor_label == "ed"


@pytest.mark.s3
class S3ExportTests:
    def test_the_zip_in_the_bucket_is_exact_and_downloads_through_the_admin(
        self, s3_env: dict[str, str], s3_bucket: str, start_worker: Any, client: Any
    ) -> None:
        start_worker(s3_env)
        campaign = Campaign.objects.create(name="Autumn sale", slug="autumn-sale")
        images = approved_images(campaign, 2)
        exporter = user_with("ed", "export_campaign", "view_campaign")

        export = built(exports.request_export(campaign.pk, Actor.of(exporter)))

        s3 = test_s3.s3_client(s3_env["AWS_S3_ENDPOINT_URL"])
        obj = s3.get_object(Bucket=s3_bucket, Key=export.file_name)
        data = obj["Body"].read()
        assert obj["ContentLength"] == export.bytes == len(data)
        originals = {
            f"autumn-sale-16x9-{image.pk}.jpg": s3.get_object(
                Bucket=s3_bucket, Key=image.file.name
            )["Body"].read()
            for image in images
        }
        check_zip(data, campaign, originals)
        assert image_storage().exists(export.file_name)  # the same storage the site uses
        assert not list(Path(imagen_files_root(s3_env)).rglob("*.zip"))

        client.force_login(exporter)
        url = reverse("admin:imagen_assets_campaign_export_download", args=[campaign.pk, export.pk])
        response = client.get(url)
        assert response.status_code == 200
        assert b"".join(response.streaming_content) == data
