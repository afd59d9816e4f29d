from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image

from imagen_assets.models import Campaign, GeneratedImage, GenerationTask
from imagen_assets.status import TaskStatus

pytestmark = pytest.mark.django_db


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "teal").save(buffer, "JPEG")
    return buffer.getvalue()


def make_task(campaign: Campaign, **fields: object) -> GenerationTask:
    defaults = dict(provider="sandbox", model="m", prompt="p", aspect_ratio="1:1", num_images=1)
    return GenerationTask.objects.create(campaign=campaign, **{**defaults, **fields})


class TaskStatusChoicesTests:
    def test_model_choices_match_the_provider_neutral_statuses(self) -> None:
        assert [c.value for c in GenerationTask.Status] == [s.value for s in TaskStatus]


class CampaignStatsTests:
    def test_with_stats_and_committed_spend_agree(self) -> None:
        campaign = Campaign.objects.create(name="C", slug="c", budget=10)
        done = make_task(campaign, status="succeeded", cost=Decimal("0.08"), num_images=2)
        make_task(campaign, status="processing", estimated_cost=Decimal("0.16"), num_images=4)
        make_task(campaign, status="failed", estimated_cost=Decimal("0.04"), cost=0)
        GeneratedImage.objects.create(
            task=done, campaign=campaign, index=0, status="succeeded", review_status="approved"
        )
        GeneratedImage.objects.create(task=done, campaign=campaign, index=1, status="filtered")
        annotated = Campaign.objects.with_stats().get(pk=campaign.pk)
        assert campaign.committed_spend() == Decimal("0.24")
        assert annotated.committed == Decimal("0.24")
        assert (
            annotated.n_images,
            annotated.n_ready,
            annotated.n_approved,
            annotated.n_failed,
            annotated.n_withheld,
        ) == (2, 1, 1, 0, 1)  # withheld is its own outcome, never "failed" (issue 8)


class ImageFileCleanupTests:
    def test_deleting_an_image_deletes_its_files_after_commit(
        self, settings, tmp_path, django_capture_on_commit_callbacks
    ) -> None:
        settings.MEDIA_ROOT = tmp_path
        campaign = Campaign.objects.create(name="C", slug="c")
        image = GeneratedImage.objects.create(task=make_task(campaign), campaign=campaign, index=0)
        image.file.save("a.jpg", ContentFile(jpeg()))
        image.thumbnail.save("a.jpg", ContentFile(jpeg()))
        names = [image.file.name, image.thumbnail.name]
        assert all(default_storage.exists(name) for name in names)
        with django_capture_on_commit_callbacks(execute=True):
            image.delete()
        assert not any(default_storage.exists(name) for name in names)
