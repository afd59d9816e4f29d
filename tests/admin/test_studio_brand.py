"""The brand kit in the admin: the generate form with templates, style presets, the final
prompt preview (the same string as what is sent), banned-term refusals, and the brand and
template pages with a template's versions."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from imagen_assets.models import (
    Brand,
    Campaign,
    GeneratedImage,
    GenerationRequest,
    GenerationTask,
    PromptTemplate,
    StylePreset,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def brand() -> Brand:
    brand = Brand.objects.create(
        name="Meadow & Co.",
        prompt_prefix="Product photo for Meadow & Co.:",
        prompt_suffix="Pastel palette, soft daylight.",
        banned_terms="Nike\n耐克",
        default_aspect_ratio="4:3",
    )
    StylePreset.objects.create(brand=brand, name="Studio product shot", prompt="white backdrop")
    return brand


@pytest.fixture
def template(brand: Brand) -> PromptTemplate:
    template = PromptTemplate(brand=brand, name="Hero", text="A {product} on a {surface}")
    template.save()
    return template


@pytest.fixture
def branded(campaign: Campaign, brand: Brand) -> Campaign:
    campaign.brand = brand
    campaign.brand_prompt = "Spring collection."
    campaign.default_aspect_ratio = ""
    campaign.save()
    return campaign


def generate_url(campaign: Campaign) -> str:
    return reverse("admin:imagen_assets_campaign_generate", args=[campaign.pk])


def form_data(**fields: Any) -> dict[str, Any]:
    data = {
        "imagen_generate": "1",
        "prompt": "",
        "count": "2",
        "aspect_ratio": "4:3",
        "provider": "sandbox",
        "seed": "",
        "negative_prompt": "",
        "template": "",
        "style": "",
    }
    data.update(fields)
    return data


def preview(client: Any, campaign: Campaign, **fields: Any) -> dict[str, Any]:
    response = client.post(
        reverse("admin:imagen_assets_campaign_prompt_preview"),
        {**form_data(**fields), "preview_campaign": [campaign.pk]},
    )
    assert response.status_code == 200
    (only,) = response.json()["previews"]
    return dict(only)


def nothing_made() -> bool:
    return not (
        GenerationRequest.objects.exists()
        or GenerationTask.objects.exists()
        or GeneratedImage.objects.exists()
    )


class GenerateFormBrandTests:
    def test_page_offers_templates_presets_and_placeholder_fields(
        self, admin_client: Any, branded: Campaign, template: PromptTemplate
    ) -> None:
        html = admin_client.get(generate_url(branded)).content.decode()
        assert "Brand kit “Meadow &amp; Co.”" in html
        assert f'<option value="{template.pk}">Hero</option>' in html
        assert "Studio product shot" in html
        # One field per placeholder, shown once the template is picked.
        assert 'name="placeholder__product"' in html
        assert 'name="placeholder__surface"' in html
        assert f'data-imagen-placeholder-for="{template.pk}" hidden' in html
        # Before anything is typed, the words the campaign adds.
        assert "Product photo for Meadow &amp; Co.:" in html
        # The brand's aspect ratio is the default (the campaign has none of its own).
        assert re.search(r'value="4:3"[^>]*checked', html)

    def test_template_filled_is_sent_and_recorded_with_its_version(
        self,
        admin_client: Any,
        branded: Campaign,
        template: PromptTemplate,
        brand: Brand,
        enqueued: Any,
        django_capture_on_commit_callbacks: Any,
    ) -> None:
        preset = brand.presets.get()
        fields = {
            "template": str(template.pk),
            "placeholder__product": "ceramic mug",
            "placeholder__surface": "oak table",
            "prompt": "morning light",
            "style": str(preset.pk),
        }
        shown = preview(admin_client, branded, **fields)
        with django_capture_on_commit_callbacks(execute=True):
            response = admin_client.post(generate_url(branded), form_data(**fields))

        assert response.status_code == 302, response.context["form"].errors
        task = GenerationTask.objects.get()
        # What the form showed is exactly what was sent.
        assert shown == {
            "campaign": branded.pk,
            "name": "Spring launch",
            "prompt": task.prompt,
            "error": None,
        }
        assert task.prompt == (
            "Product photo for Meadow & Co.:\n\nA ceramic mug on a oak table\n\nmorning light"
            "\n\nwhite backdrop\n\nSpring collection.\n\nPastel palette, soft daylight."
        )
        assert task.request_body["prompt"] == task.prompt
        request = GenerationRequest.objects.get()
        assert request.template_version == template.current_version()
        assert request.template_values == {"product": "ceramic mug", "surface": "oak table"}
        assert request.style_preset == preset

    def test_preview_matches_what_is_sent_without_a_brand(
        self,
        admin_client: Any,
        campaign: Campaign,
        enqueued: Any,
        django_capture_on_commit_callbacks: Any,
    ) -> None:
        fields = {"prompt": "  A red bicycle\n by the sea  ", "aspect_ratio": "16:9"}
        shown = preview(admin_client, campaign, **fields)
        with django_capture_on_commit_callbacks(execute=True):
            admin_client.post(generate_url(campaign), form_data(**fields))
        assert shown["prompt"] == GenerationTask.objects.get().prompt

    def test_unfilled_placeholder_is_a_field_error_and_nothing_is_made(
        self,
        admin_client: Any,
        branded: Campaign,
        template: PromptTemplate,
        enqueued: Any,
        django_capture_on_commit_callbacks: Any,
    ) -> None:
        with django_capture_on_commit_callbacks(execute=True):
            response = admin_client.post(
                generate_url(branded),
                form_data(template=str(template.pk), placeholder__product="mug"),
            )
        assert response.status_code == 200
        errors = response.context["form"].errors
        assert errors["placeholder__surface"] == ["Fill in the template's {surface}."]
        assert "placeholder__product" not in errors
        # The field shows, with its error, since its template is the one picked.
        html = response.content.decode()
        assert f'data-imagen-placeholder-for="{template.pk}">' in html
        assert nothing_made()
        assert enqueued == []

    @pytest.mark.parametrize(
        ("fields", "term", "field"),
        [
            ({"prompt": "A NIKE trainer on grass"}, "Nike", "prompt"),
            ({"prompt": "穿耐克的跑者在草地上"}, "耐克", "prompt"),
        ],
    )
    def test_banned_term_refused_naming_it_nothing_queued_or_spent(
        self,
        admin_client: Any,
        branded: Campaign,
        enqueued: Any,
        django_capture_on_commit_callbacks: Any,
        fields: dict[str, str],
        term: str,
        field: str,
    ) -> None:
        with django_capture_on_commit_callbacks(execute=True):
            response = admin_client.post(generate_url(branded), form_data(**fields))
        assert response.status_code == 200
        (message,) = response.context["form"].errors[field]
        assert f"“{term}”" in message and "Meadow & Co." in message
        assert nothing_made()
        assert enqueued == []
        assert branded.committed_spend() == Decimal(0)
        # The live preview says the same before anything is pressed.
        shown = preview(admin_client, branded, **fields)
        assert shown["prompt"] is None
        assert shown["error"] == message

    def test_banned_term_in_a_placeholder_value_is_that_fields_error(
        self, admin_client: Any, branded: Campaign, template: PromptTemplate, enqueued: Any
    ) -> None:
        response = admin_client.post(
            generate_url(branded),
            form_data(
                template=str(template.pk),
                placeholder__product="nike trainer",
                placeholder__surface="grass",
            ),
        )
        errors = response.context["form"].errors
        assert "“Nike”" in errors["placeholder__product"][0]
        assert nothing_made()

    def test_preview_needs_the_generate_permission(
        self, client: Any, staff_user: Any, campaign: Campaign
    ) -> None:
        client.force_login(staff_user("view_campaign"))
        response = client.post(
            reverse("admin:imagen_assets_campaign_prompt_preview"),
            {**form_data(prompt="x"), "preview_campaign": [campaign.pk]},
        )
        assert response.status_code == 403

    def test_preview_only_of_campaigns_the_admin_shows_this_user(
        self, admin_client: Any, campaign: Campaign, monkeypatch: Any
    ) -> None:
        # A host narrowing CampaignAdmin.get_queryset (e.g. to a user's own campaigns):
        # the preview must not reveal another campaign's brand words or banned terms.
        from imagen_assets.admin.campaigns import CampaignAdmin

        monkeypatch.setattr(
            CampaignAdmin, "get_queryset", lambda self, request: Campaign.objects.none()
        )
        response = admin_client.post(
            reverse("admin:imagen_assets_campaign_prompt_preview"),
            {**form_data(prompt="x"), "preview_campaign": [campaign.pk]},
        )
        assert response.status_code == 404

    def test_page_queries_do_not_grow_with_presets_and_templates(
        self, admin_client: Any, branded: Campaign, brand: Brand
    ) -> None:
        counts = []
        for n in (1, 8):
            for i in range(n):
                text = "A {x} and {y" + str(i) + "}"
                PromptTemplate(brand=brand, name=f"T{n}-{i}", text=text).save()
                StylePreset.objects.create(brand=brand, name=f"S{n}-{i}", prompt="w")
            with CaptureQueriesContext(connection) as queries:
                assert admin_client.get(generate_url(branded)).status_code == 200
            counts.append(len(queries))
        assert counts[0] == counts[1]


class BrandAdminTests:
    def test_brand_page_with_inline_presets_and_templates_keeps_versions(
        self, admin_client: Any, admin_user: Any
    ) -> None:
        url = reverse("admin:imagen_assets_brand_add")
        data = {
            "name": "Meadow",
            "prompt_prefix": "",
            "prompt_suffix": "Pastel.",
            "banned_terms": "Nike",
            "default_negative_prompt": "",
            "default_aspect_ratio": "",
            "presets-TOTAL_FORMS": "1",
            "presets-INITIAL_FORMS": "0",
            "presets-0-name": "Studio",
            "presets-0-prompt": "white backdrop",
            "presets-0-position": "0",
            "templates-TOTAL_FORMS": "1",
            "templates-INITIAL_FORMS": "0",
            "templates-0-name": "Hero",
            "templates-0-text": "A {product}",
        }
        response = admin_client.post(url, data)
        assert response.status_code == 302, response.context["adminform"].form.errors
        brand = Brand.objects.get()
        template = brand.templates.get()
        assert brand.presets.get().prompt == "white backdrop"
        assert [(v.number, v.text, v.changed_by) for v in template.versions.all()] == [
            (1, "A {product}", admin_user)
        ]

        # The template's own page: change it, and the history shows both versions.
        page = reverse("admin:imagen_assets_prompttemplate_change", args=[template.pk])
        response = admin_client.post(
            page, {"brand": brand.pk, "name": "Hero", "text": "A {product} on a {surface}"}
        )
        assert response.status_code == 302
        html = admin_client.get(page).content.decode()
        assert "{product}, {surface}" in html  # its placeholders
        history = html[html.index("imagen-template-history") :]
        assert history.index("A {product} on a {surface}") < history.index("A {product}</pre>")
        assert "(current)" in history
        assert html.count(admin_user.username) >= 2

    def test_a_template_with_a_bad_brace_is_refused(self, admin_client: Any) -> None:
        brand = Brand.objects.create(name="Meadow")
        response = admin_client.post(
            reverse("admin:imagen_assets_prompttemplate_add"),
            {"brand": brand.pk, "name": "Hero", "text": "A {product"},
        )
        assert response.status_code == 200
        assert "lone “{”" in response.content.decode()
        assert not PromptTemplate.objects.exists()

    def test_brand_words_holding_a_banned_term_are_refused(self, admin_client: Any) -> None:
        response = admin_client.post(
            reverse("admin:imagen_assets_brand_add"),
            {
                "name": "Meadow",
                "prompt_suffix": "Not like Nike.",
                "banned_terms": "nike",
                "presets-TOTAL_FORMS": "0",
                "presets-INITIAL_FORMS": "0",
                "templates-TOTAL_FORMS": "0",
                "templates-INITIAL_FORMS": "0",
            },
        )
        assert response.status_code == 200
        assert "every prompt would be refused" in response.content.decode()

    def test_campaign_form_offers_the_brand(self, admin_client: Any, campaign: Campaign) -> None:
        Brand.objects.create(name="Meadow")
        html = admin_client.get(
            reverse("admin:imagen_assets_campaign_change", args=[campaign.pk])
        ).content.decode()
        assert 'name="brand"' in html and "Meadow" in html
        assert "Campaign prompt" in html
