"""Honest states (issue 8, bugs 1-5): every count and badge of the campaign list, the campaign
page and the images list says what each image really is, through the Django test client."""

from __future__ import annotations

import io
import json
import re
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.urls import reverse

from imagen_assets.models import Campaign, GenerationRequest, ProviderHealth
from imagen_assets.status import BreakerState

pytestmark = pytest.mark.django_db

CAMPAIGNS = reverse("admin:imagen_assets_campaign_changelist")
IMAGES = reverse("admin:imagen_assets_generatedimage_changelist")


def change_url(campaign):
    return reverse("admin:imagen_assets_campaign_change", args=[campaign.pk])


def summary_url(campaign):
    return reverse("admin:imagen_assets_campaign_summary", args=[campaign.pk])


def image_url(image):
    return reverse("admin:imagen_assets_generatedimage_change", args=[image.pk])


@pytest.fixture
def mixed(campaign, make_image, make_task):
    """One campaign with every outcome: 2 ready (1 approved), 1 failed, 2 withheld,
    1 cancelled, 1 queued, 1 storing (task done, file not stored), 1 generating."""
    request = GenerationRequest.objects.create(campaign=campaign, prompt="Bicycles", count=9)

    def task(**fields):
        return make_task(campaign, request=request, **fields)

    images = {
        "ready": make_image(campaign, task=task()),
        "approved": make_image(campaign, task=task(), review_status="approved"),
        "failed": make_image(
            campaign,
            status="failed",
            task=task(
                status="failed",
                error_code="upstream_bad_request",
                error_message="[upstream_bad_request] Upstream returned: invalid prompt",
            ),
        ),
    }
    withheld_task = task(
        num_images=3,
        cost=Decimal("0.0425"),
        estimated_cost=Decimal("0.1275"),
        outputs=[{"url": "https://cdn.test/a.png"}],
    )
    images["withheld"] = make_image(
        campaign,
        status="filtered",
        task=withheld_task,
        index=1,
        error_message="The provider returned 1 of 3 images; this one was withheld.",
    )
    images["withheld2"] = make_image(campaign, status="filtered", task=withheld_task, index=2)
    images["cancelled"] = make_image(
        campaign, status="cancelled", task=task(status="cancelled", cost=Decimal(0))
    )
    images["queued"] = make_image(campaign, status="queued", task=task(status="queued"))
    images["storing"] = make_image(
        campaign, status="processing", task=task(status="succeeded", progress=100)
    )
    images["generating"] = make_image(
        campaign, status="processing", task=task(status="processing", progress=40)
    )
    return request, images


def counts_on(html: str) -> dict[str, int]:
    """The campaign summary's figures, by key."""
    found = re.findall(r'data-imagen-count="(\w+)"><a href="[^"]*"><strong>(\d+)</strong>', html)
    return {key: int(value) for key, value in found}


def listed(client, url: str) -> int:
    response = client.get(url.replace("&amp;", "&"))
    assert response.status_code == 200
    return response.context["cl"].result_count


class CampaignListTests:
    def test_withheld_is_its_own_column_never_failed(self, admin_client, mixed):
        response = admin_client.get(CAMPAIGNS)

        row = response.context["cl"].result_list[0]
        assert (row.n_failed, row.n_withheld, row.n_cancelled) == (1, 2, 1)
        html = response.content.decode()
        assert 'class="imagen-failed-count"' in html
        assert re.search(r'class="imagen-withheld-count" href="[^"]*">2</a>', html)
        assert re.search(r'class="imagen-failed-count" href="[^"]*">1</a>', html)

    def test_the_list_counts_agree_with_the_filters_they_link(self, admin_client, mixed, campaign):
        html = admin_client.get(CAMPAIGNS).content.decode()
        failed = re.search(r'class="imagen-failed-count" href="([^"]*)"', html).group(1)
        withheld = re.search(r'class="imagen-withheld-count" href="([^"]*)"', html).group(1)

        assert listed(admin_client, failed) == 1
        assert listed(admin_client, withheld) == 2

    def test_only_withheld_images_show_no_red(self, admin_client, campaign, make_image):
        make_image(campaign, status="filtered")

        html = admin_client.get(CAMPAIGNS).content.decode()

        assert "imagen-failed-count" not in html
        assert "imagen-withheld-count" in html


class CampaignSummaryTests:
    def test_each_outcome_is_counted_apart(self, admin_client, mixed, campaign):
        html = admin_client.get(change_url(campaign)).content.decode()

        assert counts_on(html) == {
            "total": 9,
            "ready": 2,
            "pending": 1,  # the ready one not approved: never failed, withheld or open ones
            "approved": 1,
            "open": 3,
            "failed": 1,
            "withheld": 2,
            "cancelled": 1,
        }
        assert "imagen-count-problem" in html  # failed is red
        assert 'imagen-count-withheld imagen-count-neutral"' in html  # withheld is grey

    def test_every_count_matches_the_list_it_links(self, admin_client, mixed, campaign):
        html = admin_client.get(change_url(campaign)).content.decode()
        links = dict(re.findall(r'data-imagen-count="(\w+)"><a href="([^"]*)"><strong>', html))

        for key, count in counts_on(html).items():
            assert listed(admin_client, links[key]) == count, key

    def test_pending_review_never_counts_images_that_cannot_be_reviewed(
        self, admin_client, campaign, make_image
    ):
        # Hand-edited rows claiming "pending" while failed, withheld, cancelled or open.
        for status in ("failed", "filtered", "cancelled", "queued", "processing"):
            image = make_image(campaign, status=status)
            type(image).objects.filter(pk=image.pk).update(review_status="pending")
        make_image(campaign)  # the one image really pending

        html = admin_client.get(change_url(campaign)).content.decode()
        assert counts_on(html)["pending"] == 1
        assert listed(admin_client, IMAGES + "?review_status__exact=pending") == 1
        row = Campaign.objects.with_stats().get(pk=campaign.pk)
        assert row.n_pending == 1
        response = admin_client.get(change_url(campaign))
        assert response.context["workflow_pending"] == 1

    def test_zero_withheld_failed_cancelled_are_not_shown(self, admin_client, campaign, make_image):
        make_image(campaign)

        keys = counts_on(admin_client.get(change_url(campaign)).content.decode())

        assert set(keys) == {"total", "ready", "pending", "approved", "open"}

    def test_recent_requests_read_n_of_m_ready(self, admin_client, mixed, campaign):
        request, _images = mixed

        html = admin_client.get(change_url(campaign)).content.decode()

        assert "2 of 9 ready" in html
        assert "3 in progress · 1 failed · 2 withheld · 1 cancelled" in html
        link = re.search(rf'data-imagen-request="{request.pk}">\s*<a href="([^"]*)"', html).group(1)
        assert listed(admin_client, link) == 9

    def test_summary_fragment_refreshes_while_something_is_in_progress(
        self, admin_client, mixed, campaign
    ):
        page = admin_client.get(change_url(campaign)).content.decode()
        assert f'data-imagen-summary-url="{summary_url(campaign)}"' in page

        response = admin_client.get(summary_url(campaign))

        assert response.status_code == 200
        assert "no-store" in response["Cache-Control"]
        fragment = response.content.decode()
        assert "<form" not in fragment  # only the summary: the form being edited stays
        assert "data-imagen-summary-open" in fragment
        assert counts_on(fragment)["open"] == 3

    def test_the_fragment_says_when_nothing_is_left_in_progress(
        self, admin_client, campaign, make_image
    ):
        make_image(campaign)
        make_image(campaign, status="filtered")

        fragment = admin_client.get(summary_url(campaign)).content.decode()

        assert "data-imagen-summary-open" not in fragment  # the script stops asking

    def test_the_fragment_needs_view_permission(self, client, staff_user, campaign):
        client.force_login(staff_user())
        assert client.get(summary_url(campaign)).status_code in (403, 404)
        assert client.post(summary_url(campaign)).status_code in (403, 404, 405)


class ImageStatusTests:
    def test_storing_not_generating_100(self, admin_client, mixed):
        html = admin_client.get(IMAGES).content.decode()

        assert "Storing" in html
        assert "Generating 100%" not in html
        assert "Generating 40%" in html
        assert 'aria-valuenow="40"' in html
        assert 'aria-valuenow="100"' not in html  # no full bar for an image not ready

    def test_withheld_badge_is_neutral_with_its_reason(self, admin_client, mixed):
        _request, images = mixed

        html = admin_client.get(image_url(images["withheld"])).content.decode()

        assert "imagen-status-filtered" in html
        assert "Withheld by the provider" in html
        assert "safety filter" in html
        assert 'data-imagen-outcome="withheld"' in html
        assert "imagen-outcome-neutral" in html
        assert "Review opens once the image is ready" not in html

    def test_a_withheld_image_billed_by_the_provider_says_so(self, admin_client, mixed):
        _request, images = mixed
        task = images["withheld"].task
        type(task).objects.filter(pk=task.pk).update(cost=Decimal("0.1275"))

        html = admin_client.get(image_url(images["withheld"])).content.decode()

        assert "charged $0.13 for the task although it delivered 1 image of 3" in html
        assert "about $0.09 of that paid for withheld images" in html

    def test_a_withheld_image_not_billed_says_so(self, admin_client, mixed):
        _request, images = mixed
        html = admin_client.get(image_url(images["withheld"])).content.decode()
        assert "It was not charged." in html

    def test_a_failed_image_says_what_happened_and_what_to_do(self, admin_client, mixed):
        _request, images = mixed

        html = admin_client.get(image_url(images["failed"])).content.decode()

        assert "The provider refused the prompt" in html
        assert "Edit the prompt" in html
        assert 'data-imagen-outcome="prompt_refused"' in html
        assert "Review opens once the image is ready" not in html
        # The provider's words stay available, secondary.
        assert "<details" in html and "invalid prompt" in html

    def test_the_image_page_shows_its_request(self, admin_client, mixed):
        request, images = mixed

        html = admin_client.get(image_url(images["ready"])).content.decode()

        assert f"Request #{request.pk}: 2 of 9 ready" in html

    def test_an_open_image_waits_for_a_provider_that_is_down(self, admin_client, mixed):
        _request, images = mixed
        ProviderHealth.objects.create(provider="sandbox", state=BreakerState.OPEN, failures=5)

        html = admin_client.get(image_url(images["queued"])).content.decode()

        assert "Waiting for the provider" in html
        assert "tried again automatically" in html
        assert "Review opens once the image is ready" in html  # still open: true

    def test_a_retired_model_is_named(self, admin_client, campaign, make_image, make_task, priced):
        task = make_task(
            campaign,
            provider="wave",
            model="imagen-4.0",
            status="failed",
            error_code="model_not_found",
            error_message="Wave: HTTP 400 [model_not_found]: model imagen-4.0 does not exist",
        )
        image = make_image(campaign, status="failed", task=task)

        html = admin_client.get(image_url(image)).content.decode()

        assert "The model imagen-4.0 is no longer offered by Wave" in html


class StatusCommandTests:
    def test_withheld_and_storing_apart_with_advice(self, mixed, campaign):
        out = io.StringIO()
        call_command("imagen_status", "--campaign", campaign.slug, stdout=out, stderr=io.StringIO())
        lines = out.getvalue().splitlines()
        _request, images = mixed

        def line(name):
            return next(text for text in lines if text.startswith(f"#{images[name].pk} "))

        assert " withheld " in line("withheld")
        assert "It was not charged." in line("withheld")
        assert " failed " not in line("withheld")
        assert " storing " in line("storing")
        assert "The provider refused the prompt: " in line("failed")

    def test_json_keeps_the_raw_error_and_adds_the_outcome(self, mixed, campaign):
        out = io.StringIO()
        call_command(
            "imagen_status", "--campaign", campaign.slug, "--json", stdout=out, stderr=io.StringIO()
        )
        rows = {row["id"]: row for row in map(json.loads, out.getvalue().splitlines())}
        _request, images = mixed

        failed = rows[images["failed"].pk]
        assert failed["status"] == "failed"
        assert failed["outcome"]["kind"] == "prompt_refused"
        assert "invalid prompt" in failed["error"]
        assert rows[images["withheld"].pk]["outcome"]["kind"] == "withheld"
        assert rows[images["ready"].pk]["outcome"] is None
