"""The campaign's "Generate a batch" page: the form, the preview (matrix, price, budget
left) and the confirmation that makes the whole batch or nothing."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from imagen_assets.models import Campaign, GeneratedImage, GenerationRequest, GenerationTask
from imagen_assets.templatetags.imagen_admin import pixel_size

pytestmark = pytest.mark.django_db


def batch_url(campaign: Campaign) -> str:
    return reverse("admin:imagen_assets_campaign_generate_batch", args=[campaign.pk])


def preview(client: Any, campaign: Campaign, **fields: Any) -> Any:
    data: dict[str, Any] = {
        "imagen_batch_preview": "1",
        "prompts": "A red bicycle by the sea\nA blue kite over dunes\n",
        "aspect_ratios": ["1:1", "16:9"],
        "count": "2",
        "provider": "wavespeed",
        "seed": "",
        "negative_prompt": "",
    }
    data.update(fields)
    return client.post(batch_url(campaign), data)


def confirm_data(response: Any) -> dict[str, Any]:
    """What the preview's Generate button posts: its hidden inputs and the button."""
    html = response.content.decode()
    form = html[html.index('class="imagen-batch-confirm"') :]
    data: dict[str, Any] = {}
    for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form):
        if name == "csrfmiddlewaretoken":
            continue
        data.setdefault(name, []).append(value)
    data["imagen_batch_confirm"] = "1"
    return data


class BatchFormTests:
    def test_the_campaign_page_links_to_the_batch_page(self, admin_client, campaign) -> None:
        page = admin_client.get(reverse("admin:imagen_assets_campaign_change", args=[campaign.pk]))
        assert batch_url(campaign) in page.content.decode()

    def test_the_form_offers_the_ratios_with_pixel_sizes(self, admin_client, campaign) -> None:
        response = admin_client.get(batch_url(campaign))
        assert response.status_code == 200
        html = response.content.decode()
        assert "Show the matrix and its price" in html
        assert 'name="aspect_ratios"' in html
        # WaveSpeed (the site's sandbox speaks its API) returns 1408 by 768 for 16:9.
        assert f"16:9 · {pixel_size(1408, 768)}" in html

    def test_needs_the_generate_permission(self, client, staff_user, campaign) -> None:
        client.force_login(staff_user("view_campaign"))
        assert client.get(batch_url(campaign)).status_code == 403

    def test_bad_csv_lines_are_named(self, admin_client, campaign, priced) -> None:
        upload = SimpleUploadedFile(
            "batch.csv", b"prompt,aspect_ratio,count\nGood one,1:1,1\nBad ratio,2:1,1\n,1:1,1\n"
        )
        response = preview(admin_client, campaign, prompts="", csv_file=upload)
        errors = [str(e) for e in response.context["form"].errors["csv_file"]]
        assert any(e.startswith("Line 3:") and "2:1" in e for e in errors), errors
        assert any(e.startswith("Line 4:") and "prompt is empty" in e for e in errors), errors
        assert GenerationTask.objects.count() == 0

    def test_both_text_and_csv_is_refused(self, admin_client, campaign, priced) -> None:
        upload = SimpleUploadedFile("batch.csv", b"prompt\nx\n")
        response = preview(admin_client, campaign, csv_file=upload)
        assert "not both" in str(response.context["form"].non_field_errors())


class BatchPreviewTests:
    def test_preview_shows_the_matrix_price_and_budget_left(
        self, admin_client, campaign, priced
    ) -> None:
        response = preview(admin_client, campaign)
        assert response.status_code == 200, response.context["form"].errors
        context = response.context
        assert context["plan"].count == 8  # 2 prompts x 2 ratios x 2
        assert context["cost"] == "$0.32"  # 8 x $0.04
        assert context["left"] == "$50.00"
        assert context["left_after"] == "$49.68"
        assert context["matrix"].ratios == ("1:1", "16:9")
        assert [row.cells for row in context["matrix"].rows] == [(2, 2), (2, 2)]
        html = response.content.decode()
        assert "Generate 8 images for $0.32" in html
        assert "A blue kite over dunes" in html
        # Nothing is made before the confirmation.
        assert GenerationTask.objects.count() == 0
        assert GenerationRequest.objects.count() == 0

    def test_csv_lines_keep_their_own_ratio_and_count(self, admin_client, campaign, priced) -> None:
        upload = SimpleUploadedFile(
            "batch.csv",
            '\ufeffprompt,aspect_ratio,count\n春天的樱花,9:16,3\n"Tea, two cups",,\n'.encode(),
        )
        response = preview(admin_client, campaign, prompts="", csv_file=upload, count="1")
        grid = response.context["matrix"]
        assert grid.ratios == ("1:1", "9:16", "16:9")
        assert [(row.prompt, row.cells) for row in grid.rows] == [
            ("春天的樱花", (0, 3, 0)),
            ("Tea, two cups", (1, 0, 1)),
        ]
        assert "春天的樱花" in response.content.decode()

    def test_over_budget_is_refused_naming_the_campaign(
        self, admin_client, campaign, priced
    ) -> None:
        Campaign.objects.filter(pk=campaign.pk).update(budget=Decimal("0.10"))
        response = preview(admin_client, campaign)
        assert response.context["allowed"] is False
        refusal = response.context["refusal"]
        assert refusal.startswith("Spring launch: ")
        assert "$0.32" in refusal and "$0.10" in refusal
        assert 'name="imagen_batch_confirm"' not in response.content.decode()

    def test_over_the_batch_limit_is_refused(
        self, admin_client, campaign, priced, settings
    ) -> None:
        settings.IMAGEN_ASSETS = {**settings.IMAGEN_ASSETS, "MAX_IMAGES_PER_BATCH": 5}
        response = preview(admin_client, campaign)
        assert "plan" not in response.context
        errors = " ".join(response.context["form"].non_field_errors())
        assert "8 images" in errors and "at most 5" in errors


class BatchConfirmTests:
    def test_confirm_makes_one_batch_request(self, admin_client, campaign, priced) -> None:
        response = preview(admin_client, campaign, seed="100")
        done = admin_client.post(batch_url(campaign), confirm_data(response))
        assert done.status_code == 302
        [request] = GenerationRequest.objects.all()
        assert request.origin == GenerationRequest.Origin.BATCH
        assert request.count == 8
        tasks = list(request.tasks.order_by("pk"))
        assert [(t.aspect_ratio, t.num_images, t.seed) for t in tasks] == [
            ("1:1", 2, 100),
            ("16:9", 2, 101),
            ("1:1", 2, 102),
            ("16:9", 2, 103),
        ]
        assert GeneratedImage.objects.filter(campaign=campaign).count() == 8
        alts = set(GeneratedImage.objects.values_list("alt_text", flat=True))
        assert alts == {"A red bicycle by the sea", "A blue kite over dunes"}
        [message] = [str(m) for m in get_messages(done.wsgi_request)]
        assert "Queued a batch of 8 images for Spring launch" in message

    def test_the_same_preview_confirmed_twice_makes_one_batch(
        self, admin_client, campaign, priced
    ) -> None:
        # A double click or the back button: one batch; a new preview may make another.
        response = preview(admin_client, campaign)
        data = confirm_data(response)
        assert admin_client.post(batch_url(campaign), data).status_code == 302
        again = admin_client.post(batch_url(campaign), data)
        assert GenerationRequest.objects.count() == 1
        assert "was made already" in again.context["refusal"]
        assert GeneratedImage.objects.count() == 8
        assert (
            admin_client.post(
                batch_url(campaign), confirm_data(preview(admin_client, campaign))
            ).status_code
            == 302
        )
        assert GenerationRequest.objects.count() == 2

    def test_confirm_refused_when_the_budget_went_meanwhile(
        self, admin_client, campaign, priced
    ) -> None:
        response = preview(admin_client, campaign)
        Campaign.objects.filter(pk=campaign.pk).update(budget=Decimal("0.20"))
        refused = admin_client.post(batch_url(campaign), confirm_data(response))
        assert refused.status_code == 200
        assert refused.context["refusal"].startswith("Spring launch: This would cost $0.32")
        assert GenerationTask.objects.count() == 0
        assert GenerationRequest.objects.count() == 0

    def test_an_altered_preview_is_refused(self, admin_client, campaign, priced) -> None:
        data = confirm_data(preview(admin_client, campaign))
        data["batch"] = [data["batch"][0][:-2] + "xx"]
        response = admin_client.post(batch_url(campaign), data)
        assert response.status_code == 200
        assert "plan" not in response.context
        assert GenerationTask.objects.count() == 0

    def test_change_the_batch_brings_the_values_back(self, admin_client, campaign, priced) -> None:
        data = confirm_data(preview(admin_client, campaign))
        del data["imagen_batch_confirm"]
        data["imagen_batch_edit"] = "1"
        response = admin_client.post(batch_url(campaign), data)
        form = response.context["form"]
        assert not form.is_bound
        assert form.initial["prompts"].startswith("A red bicycle by the sea")
        assert form.initial["aspect_ratios"] == ["1:1", "16:9"]
        assert GenerationTask.objects.count() == 0


class AltTextAdminTests:
    def test_the_image_page_edits_the_alt_text_and_keeps_the_approval(
        self, admin_client, campaign, make_task
    ) -> None:
        from imagen_assets.status import ReviewStatus

        task = make_task(campaign, prompt="a kite\n\nPastel palette, soft daylight.")
        image = GeneratedImage.objects.create(task=task, campaign=campaign, index=0)
        assert image.alt_text == "A kite"
        GeneratedImage.objects.filter(pk=image.pk).update(
            status="succeeded", review_status=ReviewStatus.APPROVED
        )
        page = admin_client.get(
            reverse("admin:imagen_assets_generatedimage_change", args=[image.pk])
        )
        html = page.content.decode()
        assert 'name="alt_text"' in html and ">A kite</textarea>" in html

        url = reverse("admin:imagen_assets_generatedimage_alt_text", args=[image.pk])
        done = admin_client.post(url, {"alt_text": "A yellow kite over the dunes"})
        assert done.status_code == 302
        image.refresh_from_db()
        assert image.alt_text == "A yellow kite over the dunes"
        assert image.review_status == ReviewStatus.APPROVED

        refused = admin_client.post(url, {"alt_text": "  "})
        [message] = [str(m) for m in get_messages(refused.wsgi_request)][-1:]
        assert "Write the alt text" in message
        image.refresh_from_db()
        assert image.alt_text == "A yellow kite over the dunes"

    def test_a_viewer_sees_the_alt_text_without_a_form(
        self, client, staff_user, campaign, make_task
    ) -> None:
        task = make_task(campaign, prompt="a kite")
        image = GeneratedImage.objects.create(task=task, campaign=campaign, index=0)
        client.force_login(staff_user("view_generatedimage"))
        page = client.get(reverse("admin:imagen_assets_generatedimage_change", args=[image.pk]))
        html = page.content.decode()
        assert "A kite" in html
        assert 'name="alt_text"' not in html
        url = reverse("admin:imagen_assets_generatedimage_alt_text", args=[image.pk])
        client.post(url, {"alt_text": "Changed"})
        image.refresh_from_db()
        assert image.alt_text == "A kite"


def test_the_batch_form_says_how_each_prompt_is_sent_with_the_brand_kit_and_defaults(
    admin_client: Any,
) -> None:
    from imagen_assets.models import Brand

    brand = Brand.objects.create(
        name="Meadow", prompt_prefix="Meadow photo.", default_aspect_ratio="9:16"
    )
    campaign = Campaign.objects.create(
        name="Kit", slug="kit", brand=brand, brand_prompt="Spring.", default_aspect_ratio=""
    )
    response = admin_client.get(
        reverse("admin:imagen_assets_campaign_generate_batch", args=[campaign.pk])
    )
    html = response.content.decode()
    assert "Meadow photo.\n\n[each prompt]\n\nSpring." in response.context["prompt_shape"]
    assert "Meadow photo." in html
    # The brand's default ratio is checked, since the campaign has none of its own.
    assert response.context["form"].fields["aspect_ratios"].initial == ["9:16"]
