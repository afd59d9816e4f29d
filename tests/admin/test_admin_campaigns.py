"""The campaigns admin: the list with its counts and spend, the page with summary and gallery."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from imagen_assets.models import Campaign

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:imagen_assets_campaign_changelist")


class CampaignChangelistTests:
    def test_shows_counts_and_spend_against_budget(
        self, admin_client, campaign, make_image, make_task
    ):
        make_image(campaign, review_status="approved")
        make_image(campaign)
        make_image(campaign, status="failed")
        make_image(campaign, status="queued")
        make_task(campaign, status="succeeded", cost=Decimal("1.00"))
        make_task(campaign, status="processing", estimated_cost=Decimal("0.20"))
        make_task(campaign, status="failed", estimated_cost=Decimal("9.00"))  # never billed

        response = admin_client.get(CHANGELIST)

        assert response.status_code == 200
        row = response.context["cl"].result_list[0]
        assert (row.n_images, row.n_ready, row.n_approved, row.n_failed) == (4, 2, 1, 1)
        assert row.committed == campaign.committed_spend() == Decimal("1.20")
        html = response.content.decode()
        assert "$1.20 of $50.00" in html
        assert f"campaign__id__exact={campaign.pk}" in html

    def test_spend_without_budget(self, admin_client):
        Campaign.objects.create(name="Open", slug="open")
        assert "$0.00 · no limit" in admin_client.get(CHANGELIST).content.decode()

    def test_query_count_does_not_grow_with_the_campaigns(
        self, admin_client, make_image, django_assert_max_num_queries
    ):
        first = Campaign.objects.create(name="C0", slug="c0", budget=Decimal(5))
        make_image(first)
        with CaptureQueriesContext(connection) as one:
            assert admin_client.get(CHANGELIST).status_code == 200

        for index in range(1, 30):
            other = Campaign.objects.create(name=f"C{index}", slug=f"c{index}")
            make_image(other)
        with django_assert_max_num_queries(len(one)):
            response = admin_client.get(CHANGELIST)
        assert len(response.context["cl"].result_list) == 30

    def test_search(self, admin_client, campaign):
        Campaign.objects.create(name="Autumn", slug="autumn", brief="Leaves and coats")
        response = admin_client.get(CHANGELIST, {"q": "coats"})
        assert [c.name for c in response.context["cl"].result_list] == ["Autumn"]


class CampaignChangePageTests:
    def url(self, campaign: Campaign) -> str:
        return reverse("admin:imagen_assets_campaign_change", args=[campaign.pk])

    def test_shows_summary_gallery_and_generate_button(
        self, admin_client, campaign, make_image, make_task, media
    ):
        ready = make_image(campaign, with_file=True, review_status="approved")
        open_image = make_image(campaign, status="processing")
        make_task(campaign, status="succeeded", cost=Decimal("1.20"))

        response = admin_client.get(self.url(campaign))

        assert response.status_code == 200
        html = response.content.decode()
        assert "$1.20" in html and "of $50.00 committed" in html
        assert "$48.80 left" in html
        assert f'src="/imagen/thumbnail/{ready.pk}/"' in html
        assert reverse("admin:imagen_assets_generatedimage_change", args=[ready.pk]) in html
        assert reverse("admin:imagen_assets_generatedimage_change", args=[open_image.pk]) in html
        assert reverse("admin:imagen_assets_campaign_generate", args=[campaign.pk]) in html
        assert "Generate images" in html

    def test_default_provider_is_a_select_of_configured_aliases(self, admin_client, campaign):
        form = admin_client.get(self.url(campaign)).context["adminform"].form
        choices = dict(form.fields["default_provider"].choices)
        assert list(choices) == ["", "sandbox", "wave", "wavespeed"]
        assert choices[""] == "Site default (Sandbox)"
        assert "not configured" in str(choices["wave"])

    def test_add_sets_created_by_and_saves_the_default_provider(self, admin_client, admin_user):
        add = reverse("admin:imagen_assets_campaign_add")
        assert admin_client.get(add).status_code == 200
        response = admin_client.post(
            add,
            {
                "name": "Winter",
                "slug": "winter",
                "brief": "",
                "brand_prompt": "",
                "default_provider": "sandbox",
                "default_aspect_ratio": "16:9",
                "default_negative_prompt": "",
                "budget": "10",
            },
        )
        assert response.status_code == 302, response.context["adminform"].form.errors
        winter = Campaign.objects.get(slug="winter")
        assert winter.created_by == admin_user
        assert winter.default_provider == "sandbox"

    def test_an_unknown_provider_is_refused(self, admin_client, campaign):
        response = admin_client.post(
            self.url(campaign),
            {
                "name": campaign.name,
                "slug": campaign.slug,
                "default_provider": "nope",
                "default_aspect_ratio": "1:1",
            },
        )
        assert response.status_code == 200
        assert "default_provider" in response.context["adminform"].form.errors


class BrandingTests:
    def test_site_header(self, admin_client):
        html = admin_client.get(reverse("admin:index")).content.decode()
        assert "imagen-assets · Campaigns" in html
