"""Generate again and Cancel in the admin: the image page's box, the prefilled generate
page, the cancel confirmation, and the refusals (which change nothing and say why)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from imagen_assets.models import Campaign, GeneratedImage, GenerationRequest, GenerationTask
from imagen_assets.status import CampaignStatus, ImageStatus, TaskStatus

pytestmark = pytest.mark.django_db

PERMS = ("view_generatedimage", "view_campaign", "generate_images")


def page(image: GeneratedImage) -> str:
    return reverse("admin:imagen_assets_generatedimage_change", args=[image.pk])


def generate_url(image: GeneratedImage, mode: str, **extra: str) -> str:
    url = reverse("admin:imagen_assets_campaign_generate", args=[image.campaign_id])
    query = "&".join(f"{k}={v}" for k, v in {"again": image.pk, "mode": mode, **extra}.items())
    return f"{url}?{query}"


def said(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


@pytest.fixture
def marketer(client: Any, staff_user: Any) -> Any:
    client.force_login(staff_user(*PERMS))
    return client


@pytest.fixture
def failed_image(campaign: Campaign, make_task: Any, make_image: Any) -> GeneratedImage:
    request = GenerationRequest.objects.create(
        campaign=campaign, prompt="A red bicycle by the sea", count=2
    )
    task = make_task(
        campaign, status="failed", num_images=2, seed=777, aspect_ratio="16:9", request=request
    )
    make_image(campaign, status="failed", task=task, index=1)
    return make_image(campaign, status="failed", task=task, index=0)


class ImagePageTests:
    def test_a_failed_image_offers_retry_more_and_another_provider(
        self, marketer, failed_image, priced
    ) -> None:
        html = marketer.get(page(failed_image)).content.decode()
        assert "Generate again" in html
        for mode in ("retry", "more", "other"):
            assert f"mode={mode}" in html
        assert "Cancel this image" not in html  # nothing unfinished

    def test_an_unfinished_image_offers_cancel_of_it_and_of_its_task(
        self, marketer, campaign, make_task, make_image
    ) -> None:
        task = make_task(campaign, status="processing", num_images=2, provider_task_id="ws-9")
        image = make_image(campaign, status="processing", task=task)
        make_image(campaign, status="processing", task=task, index=1)
        html = marketer.get(page(image)).content.decode()
        assert "Cancel this image" in html
        assert "Cancel its task (2 images)" in html

    def test_someone_who_may_not_generate_is_offered_nothing(
        self, client, staff_user, failed_image
    ) -> None:
        client.force_login(staff_user("view_generatedimage"))
        html = client.get(page(failed_image)).content.decode()
        assert "mode=retry" not in html
        assert client.get(generate_url(failed_image, "retry")).status_code == 403

    def test_a_closed_campaign_says_why_and_offers_no_link(
        self, marketer, failed_image, campaign
    ) -> None:
        Campaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.ARCHIVED)
        html = marketer.get(page(failed_image)).content.decode()
        assert "reopen it to generate more images" in html
        assert "mode=retry" not in html

    def test_the_list_offers_retry_on_failed_rows(self, marketer, failed_image) -> None:
        html = marketer.get(reverse("admin:imagen_assets_generatedimage_changelist")).content
        assert f"again={failed_image.pk}&amp;mode=retry".encode() in html


class PrefilledGenerateTests:
    def test_retry_prefills_every_parameter_and_shows_what_is_carried(
        self, marketer, failed_image
    ) -> None:
        response = marketer.get(generate_url(failed_image, "retry"))
        assert response.status_code == 200
        form = response.context["form"]
        assert form.initial["prompt"] == "A red bicycle by the sea"
        assert form.initial["seed"] == 777
        assert form.initial["count"] == 2  # the failed task's count
        assert form.initial["aspect_ratio"] == "16:9"
        html = response.content.decode()
        assert "Carried over from" in html
        assert 'name="again"' in html
        assert 'value="777"' in html

    def test_submitting_records_the_origin_and_the_source_image(
        self, marketer, failed_image, enqueued
    ) -> None:
        response = marketer.post(
            reverse("admin:imagen_assets_campaign_generate", args=[failed_image.campaign_id]),
            {
                "imagen_generate": "1",
                "again": failed_image.pk,
                "mode": "more",
                "prompt": "A red bicycle by the sea",
                "count": "2",
                "aspect_ratio": "16:9",
                "provider": "sandbox",
                "seed": "",
                "negative_prompt": "",
            },
        )
        assert response.status_code == 302, said(response)
        made = GenerationRequest.objects.latest("pk")
        assert made.origin == GenerationRequest.Origin.MORE_LIKE_THIS
        assert made.source_image_id == failed_image.pk

    def test_an_image_of_another_campaign_is_not_found(self, marketer, failed_image) -> None:
        other = Campaign.objects.create(name="Other", slug="other")
        url = reverse("admin:imagen_assets_campaign_generate", args=[other.pk])
        assert marketer.get(f"{url}?again={failed_image.pk}&mode=retry").status_code == 404

    def test_no_other_provider_is_a_refusal_that_goes_back(self, marketer, failed_image) -> None:
        response = marketer.get(generate_url(failed_image, "other"))
        assert response.status_code == 302
        assert "No other provider is configured" in " ".join(said(response))

    def test_a_closed_campaign_refuses_the_request_and_makes_nothing(
        self, marketer, failed_image, campaign, enqueued
    ) -> None:
        Campaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.APPROVED)
        tasks = GenerationTask.objects.count()
        response = marketer.post(
            reverse("admin:imagen_assets_campaign_generate", args=[campaign.pk]),
            {
                "imagen_generate": "1",
                "again": failed_image.pk,
                "mode": "retry",
                "prompt": "A red bicycle by the sea",
                "count": "1",
                "aspect_ratio": "16:9",
                "provider": "sandbox",
                "seed": "777",
                "negative_prompt": "",
            },
        )
        assert response.status_code == 200
        assert "reopen it to generate more images" in response.content.decode()
        assert GenerationTask.objects.count() == tasks
        assert not enqueued


class CancelPageTests:
    def test_confirm_then_cancel_says_what_happened(
        self, marketer, campaign, make_task, make_image
    ) -> None:
        task = make_task(campaign, status="queued", num_images=1, estimated_cost="0.04")
        image = make_image(campaign, status="queued", task=task)
        url = reverse("admin:imagen_assets_generatedimage_cancel", args=[image.pk])
        confirm = marketer.get(url + "?scope=image")
        assert confirm.status_code == 200
        assert "Yes, cancel 1 image" in confirm.content.decode()
        image.refresh_from_db()
        assert image.status == ImageStatus.QUEUED  # a GET changes nothing
        done = marketer.post(url, {"scope": "image"})
        assert done.status_code == 302
        assert "nothing is charged" in " ".join(said(done))
        image.refresh_from_db()
        task.refresh_from_db()
        assert image.status == ImageStatus.CANCELLED
        assert task.status == TaskStatus.CANCELLED

    def test_a_finished_image_is_refused_and_nothing_changes(
        self, marketer, campaign, make_image
    ) -> None:
        image = make_image(campaign, status="succeeded")
        url = reverse("admin:imagen_assets_generatedimage_cancel", args=[image.pk])
        response = marketer.post(url, {"scope": "image"})
        assert response.status_code == 302
        assert "is ready: there is nothing to cancel" in " ".join(said(response))
        image.refresh_from_db()
        assert image.status == ImageStatus.SUCCEEDED

    def test_cancel_needs_the_generate_permission(
        self, client, staff_user, campaign, make_image
    ) -> None:
        client.force_login(staff_user("view_generatedimage"))
        image = make_image(campaign, status="queued")
        url = reverse("admin:imagen_assets_generatedimage_cancel", args=[image.pk])
        assert client.post(url, {"scope": "image"}).status_code == 403
        image.refresh_from_db()
        assert image.status == ImageStatus.QUEUED
