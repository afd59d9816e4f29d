"""Issue 8, "Honest states" item 6 (the small bugs) and the scannable library: each test
here fails on the admin as it was before the fix it names."""

from __future__ import annotations

import copy
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.contrib.staticfiles import finders
from django.db import connection
from django.template.defaultfilters import filesizeformat
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format

from imagen_assets.models import Campaign, GeneratedImage, GenerationRequest, GenerationTask
from imagen_assets.providers import provider_display_name

pytestmark = pytest.mark.django_db

IMAGES = reverse("admin:imagen_assets_generatedimage_changelist")
TASKS = reverse("admin:imagen_assets_generationtask_changelist")
REQUESTS = reverse("admin:imagen_assets_generationrequest_changelist")
WHEN = datetime(2026, 11, 21, 21, 22, tzinfo=timezone.get_fixed_timezone(0))


def image_url(image: GeneratedImage) -> str:
    return reverse("admin:imagen_assets_generatedimage_change", args=[image.pk])


def task_url(task: GenerationTask) -> str:
    return reverse("admin:imagen_assets_generationtask_change", args=[task.pk])


def stylesheet() -> str:
    return Path(finders.find("imagen_assets/admin.css")).read_text(encoding="utf-8")


def html_of(response: Any) -> str:
    assert response.status_code == 200, response.status_code
    return str(response.content.decode())


def a_request(campaign: Campaign, make_task: Any, make_image: Any, sizes: list[int]) -> Any:
    """A request of ``sum(sizes)`` images in one task per size; the first ``ready`` succeed."""
    request = GenerationRequest.objects.create(
        campaign=campaign, prompt="A red bicycle by the sea", count=sum(sizes)
    )
    images = []
    for size in sizes:
        task = make_task(campaign, request=request, num_images=size, status="succeeded")
        images += [make_image(campaign, task=task, index=index) for index in range(size)]
    return request, images


# -- "Honest states" 6 ---------------------------------------------------------------------


class JsonBlockTests:
    """The reproduce and request JSON was clipped with no scrollbar."""

    def test_the_json_wraps_scrolls_and_can_be_copied(self, admin_client, campaign, make_image):
        image = make_image(campaign)
        html = html_of(admin_client.get(image_url(image)))
        assert (
            '<div class="imagen-json-box"><button type="button" class="button imagen-copy"' in html
        )
        assert '<pre class="imagen-json" tabindex="0">' in html  # focusable: scrolls by keyboard
        css = stylesheet()
        rule = css[css.index(".imagen-json {") :]
        rule = rule[: rule.index("}")]
        assert "white-space: pre-wrap" in rule and "overflow: auto" in rule
        assert ".field-reproduction_json .readonly" in css
        assert ".field-request_json .readonly" in css

    def test_the_task_page_has_the_same_block(self, admin_client, campaign, make_task):
        task = make_task(campaign)
        html = html_of(admin_client.get(task_url(task)))
        assert html.count('class="imagen-json-box"') == 2  # request sent, outputs


class PreservedFiltersTests:
    """A review lost the list's filters."""

    FILTERS = "status__exact=succeeded&campaign__id__exact=1"

    def test_the_review_forms_carry_the_filters(self, admin_client, campaign, make_image):
        image = make_image(campaign)
        kept = quote(self.FILTERS, safe="")
        html = html_of(admin_client.get(f"{image_url(image)}?_changelist_filters={kept}"))
        for name in ("approve", "reject", "comment"):
            action = reverse(f"admin:imagen_assets_generatedimage_{name}", args=[image.pk])
            assert f'action="{action}?_changelist_filters={kept}"' in html
        assert f"_changelist_filters={kept}" in html.split("Open the review screen")[0]

    @pytest.mark.parametrize(("name", "data"), [("approve", {}), ("reject", {"note": "Off"})])
    def test_a_decision_returns_to_the_page_with_the_filters(
        self, admin_client, campaign, make_image, name, data
    ):
        image = make_image(campaign)
        kept = quote(self.FILTERS, safe="")
        url = reverse(f"admin:imagen_assets_generatedimage_{name}", args=[image.pk])
        response = admin_client.post(f"{url}?_changelist_filters={kept}", data)
        assert response.status_code == 302
        assert response["Location"] == f"{image_url(image)}?_changelist_filters={kept}"
        page = html_of(admin_client.get(response["Location"]))
        # The page's way back to the list is the filtered list.
        assert f"{IMAGES}?{self.FILTERS.replace('&', '&amp;')}" in page

    def test_the_review_screen_leads_back_to_the_filtered_list(
        self, admin_client, campaign, make_image
    ):
        image = make_image(campaign)
        screen = reverse("admin:imagen_assets_generatedimage_review")
        kept = quote(self.FILTERS, safe="")
        html = html_of(admin_client.get(f"{screen}?_changelist_filters={kept}"))
        assert f'href="{IMAGES}?{self.FILTERS.replace("&", "&amp;")}"' in html
        assert f'name="_changelist_filters" value="{self.FILTERS.replace("&", "&amp;")}"' in html
        response = admin_client.post(
            screen,
            {"action": "approve", "image": image.pk, "_changelist_filters": self.FILTERS},
        )
        assert f"_changelist_filters={kept}" in response["Location"]


class HiddenFilterTests:
    """``?task__id__exact=5`` filtered the list with nothing on the page saying so."""

    def test_a_task_filter_is_a_chip_with_a_clear_link(
        self, admin_client, campaign, make_image, make_task
    ):
        task = make_task(campaign)
        make_image(campaign, task=task)
        make_image(campaign)
        response = admin_client.get(f"{IMAGES}?task__id__exact={task.pk}&q=bicycle")
        html = html_of(response)
        assert len(response.context["cl"].result_list) == 1
        assert f"Task #{task.pk}" in html
        assert 'class="imagen-chip-clear" title="Clear this filter"' in html
        assert 'href="?q=bicycle"' in html  # the same list without the filter

    def test_a_campaign_filter_reads_the_campaigns_name(self, admin_client, campaign, make_task):
        make_task(campaign)
        html = html_of(admin_client.get(f"{TASKS}?campaign__id__exact={campaign.pk}"))
        assert "Campaign: Spring launch" in html

    def test_the_generate_pages_campaigns_filter(self, admin_client, campaign, make_image):
        other = Campaign.objects.create(name="Summer", slug="summer")
        make_image(campaign)
        make_image(other)
        html = html_of(admin_client.get(f"{IMAGES}?campaign__id__in={campaign.pk},{other.pk}"))
        assert "Campaign: Spring launch, Summer" in html
        assert 'href="?"' in html  # clear: the whole list

    def test_filters_of_the_sidebar_are_no_chips(self, admin_client, campaign, make_image):
        make_image(campaign)
        html = html_of(admin_client.get(f"{IMAGES}?status__exact=succeeded"))
        assert "imagen-chip" not in html


class ResultCountTests:
    """ "N results (Show all)" showed on unfiltered lists."""

    @pytest.mark.parametrize("url", [IMAGES, TASKS])
    def test_not_on_an_unfiltered_list(self, admin_client, campaign, make_image, url):
        make_image(campaign)
        html = html_of(admin_client.get(url))
        assert "Show all" not in html
        assert "1 result" not in html

    def test_on_a_searched_list(self, admin_client, campaign, make_image):
        make_image(campaign)
        html = html_of(admin_client.get(f"{IMAGES}?q=bicycle"))
        assert "1 result" in html and "Show all" in html


class MoneyTests:
    """ "$24.8725 left": money a person reads has two decimals."""

    def test_campaign_page_and_task_list(self, admin_client, campaign, make_task):
        make_task(campaign, estimated_cost=Decimal("25.1275"), cost=Decimal("25.1275"))
        page = html_of(
            admin_client.get(reverse("admin:imagen_assets_campaign_change", args=[campaign.pk]))
        )
        assert "$24.87 left" in page
        assert "$24.8725" not in page and "$25.1275" not in page
        tasks = html_of(admin_client.get(TASKS))
        assert "$25.13" in tasks and "$25.1275" not in tasks


class DateFormatTests:
    """Dates used two formats (SHORT_DATETIME_FORMAT and DATETIME_FORMAT)."""

    def test_one_format_on_the_campaign_page_and_the_task_page(
        self, admin_client, campaign, make_image, make_task
    ):
        task = make_task(campaign, created_at=WHEN)
        make_image(campaign, task=task, created_at=WHEN)
        local = timezone.localtime(WHEN)
        long = date_format(local, "DATETIME_FORMAT")
        short = date_format(local, "SHORT_DATETIME_FORMAT")
        assert long != short
        page = html_of(
            admin_client.get(reverse("admin:imagen_assets_campaign_change", args=[campaign.pk]))
        )
        assert long in page and short not in page  # the gallery's cards
        assert long in html_of(admin_client.get(task_url(task)))
        listing = html_of(admin_client.get(IMAGES))
        assert date_format(local, "DATE_FORMAT") in listing
        assert date_format(local, "SHORT_DATE_FORMAT") not in listing


class ImagePageTests:
    def test_not_flagged_nsfw_is_plain_text(self, admin_client, campaign, make_image):
        html = html_of(admin_client.get(image_url(make_image(campaign))))
        row = html[html.index("field-nsfw_display") :]
        row = row[: row.index("</div>\n\n")]
        assert "icon-no" not in row and "No" in row

    def test_flagged_nsfw_says_so(self, admin_client, campaign, make_image):
        html = html_of(admin_client.get(image_url(make_image(campaign, nsfw=True))))
        assert "Yes: the provider flagged it" in html

    def test_sizes_are_human(self, admin_client, campaign, make_image):
        html = html_of(admin_client.get(image_url(make_image(campaign, bytes=1_234_567))))
        assert str(filesizeformat(1_234_567)) in html  # 1.2 MB
        assert "1234567" not in html

    def test_no_delete_on_a_page_to_look_at(self, admin_client, campaign, make_image, make_task):
        html = html_of(admin_client.get(image_url(make_image(campaign))))
        assert "deletelink" not in html
        assert "deletelink" not in html_of(admin_client.get(task_url(make_task(campaign))))


class SandboxNameTests:
    """Sandbox images were stamped "WaveSpeed AI": a real provider's backend pointed at the
    sandbox is named as the sandbox."""

    @pytest.fixture
    def demo_like(self, settings: Any) -> None:
        config = copy.deepcopy(settings.IMAGEN_ASSETS)
        sandbox = "http://127.0.0.1:8765"
        config["PROVIDERS"] = {
            "sandbox": {
                "BACKEND": "imagen_assets.providers.sandbox.SandboxProvider",
                "OPTIONS": {"BASE_URL": sandbox},
            },
            "wave": {
                "BACKEND": "imagen_assets.providers.wave.WaveProvider",
                "OPTIONS": {"API_KEY": "sandbox", "BASE_URL": sandbox + "/"},
            },
            "wavespeed": {
                "BACKEND": "imagen_assets.providers.wavespeed.WaveSpeedProvider",
                "OPTIONS": {"API_KEY": "k", "BASE_URL": "https://api.wavespeed.ai"},
            },
        }
        settings.IMAGEN_ASSETS = config

    def test_names(self, demo_like: None) -> None:
        assert provider_display_name("sandbox") == "Sandbox"
        assert provider_display_name("wave") == "Sandbox (Wave protocol)"
        assert provider_display_name("wavespeed") == "WaveSpeed AI"
        assert provider_display_name("gone") == "gone"

    def test_in_the_lists(self, demo_like: None, admin_client, campaign, make_image, make_task):
        make_image(campaign, task=make_task(campaign, provider="wave"))
        assert "Sandbox (Wave protocol)" in html_of(admin_client.get(IMAGES))
        assert "Sandbox (Wave protocol)" in html_of(admin_client.get(TASKS))


class TaskStatusTests:
    """A task read "Succeeded" with 0 of 1 image delivered; its page had two "Images" rows."""

    def test_status_counts_the_delivered_images(
        self, admin_client, campaign, make_task, make_image
    ):
        nothing = make_task(campaign, status="succeeded", num_images=1)
        make_image(campaign, task=nothing, status="failed")
        some = make_task(campaign, status="succeeded", num_images=4)
        for index in range(4):
            make_image(campaign, task=some, index=index, status="succeeded" if index else "failed")
        html = html_of(admin_client.get(TASKS))
        assert "Finished: 0 of 1 image delivered" in html
        assert "Delivered 3 of 4" in html
        assert '<td class="field-status_column">Succeeded</td>' not in html
        page = html_of(admin_client.get(task_url(nothing)))
        assert "Finished: 0 of 1 image delivered" in page

    def test_the_two_image_rows_have_their_own_labels(self, admin_client, campaign, make_task):
        html = html_of(admin_client.get(task_url(make_task(campaign))))
        assert "Images asked for:" in html and "Images delivered:" in html
        assert "<label>Images:</label>" not in html


class FaviconTests:
    def test_every_admin_page_links_the_apps_favicon(self, admin_client, campaign, make_image):
        assert finders.find("imagen_assets/favicon.svg")
        icon = '<link rel="icon" href="/static/imagen_assets/favicon.svg" type="image/svg+xml">'
        for url in (reverse("admin:index"), IMAGES, image_url(make_image(campaign))):
            assert icon in html_of(admin_client.get(url))

    def test_favicon_ico_is_served(self, client):
        response = client.get("/favicon.ico")
        assert response.status_code == 301
        assert response["Location"] == "/static/imagen_assets/favicon.svg"


# -- the scannable library -----------------------------------------------------------------


class GridTests:
    def test_the_grid_is_the_same_rows_as_large_cards(
        self, admin_client, campaign, make_image, make_task, media
    ):
        request, images = a_request(campaign, make_task, make_image, [4])
        other = make_image(campaign)
        url = f"{IMAGES}?view=grid&task__request={request.pk}"
        response = admin_client.get(url)
        html = html_of(response)
        assert [row.pk for row in response.context["cl"].result_list] == [
            image.pk for image in sorted(images, key=lambda i: (i.created_at, i.pk), reverse=True)
        ]
        assert html.count('class="imagen-grid-card"') == 4
        assert "#3 of 4" in html and "A red bicycle by the sea" in html
        assert f"Request #{request.pk}" in html and "4 of 4 ready" in html
        assert f'value="{other.pk}" class="action-select"' not in html
        assert 'id="result_list"' not in html  # cards instead of the table
        # The switch keeps the filter; "List" drops only the view.
        assert f'href="?task__request={request.pk}"' in html
        assert 'aria-current="page">Grid<' in html

    def test_grid_cards_have_large_thumbnails(self, admin_client, campaign, make_image, media):
        make_image(campaign, with_file=True)
        html = html_of(admin_client.get(f"{IMAGES}?view=grid"))
        assert 'class="imagen-thumb imagen-thumb-grid"' in html
        css = stylesheet()
        assert ".imagen-thumb-grid { width: 100%; height: 180px; }" in css

    @pytest.mark.parametrize("view", ["", "grid"])
    def test_no_query_per_row(
        self,
        admin_client,
        campaign,
        make_image,
        make_task,
        media,
        view,
        django_assert_max_num_queries,
    ):
        a_request(campaign, make_task, make_image, [2])
        make_image(campaign, with_file=True)
        url = f"{IMAGES}?view={view}" if view else IMAGES
        with CaptureQueriesContext(connection) as few:
            assert admin_client.get(url).status_code == 200
        a_request(campaign, make_task, make_image, [4, 4, 3])
        for index in range(10):
            make_image(campaign, with_file=index % 2 == 0)
        with django_assert_max_num_queries(len(few)):
            response = admin_client.get(url)
        assert len(response.context["cl"].result_list) == 24


class ListColumnTests:
    def test_prompt_number_request_and_campaign_link(
        self, admin_client, campaign, make_image, make_task
    ):
        request, _images = a_request(campaign, make_task, make_image, [4, 4])
        html = html_of(admin_client.get(IMAGES))
        assert "#8 of 8" in html and "#1 of 8" in html  # numbered across the request's tasks
        assert 'class="imagen-prompt-excerpt"' in html
        assert f'href="?task__request={request.pk}"' in html
        assert "8 of 8 ready" in html
        campaign_link = reverse("admin:imagen_assets_campaign_change", args=[campaign.pk])
        assert f'<a href="{campaign_link}">Spring launch</a>' in html
        assert f'<a href="{campaign_link}">Spring launch</a>' in html_of(admin_client.get(TASKS))

    def test_an_image_without_a_request_is_numbered_in_its_task(
        self, admin_client, campaign, make_image, make_task
    ):
        task = make_task(campaign, num_images=2)
        make_image(campaign, task=task, index=1)
        assert "#2 of 2" in html_of(admin_client.get(IMAGES))

    def test_the_request_filter(self, admin_client, campaign, make_image, make_task):
        request, images = a_request(campaign, make_task, make_image, [2])
        make_image(campaign)
        response = admin_client.get(f"{IMAGES}?task__request={request.pk}")
        assert {row.pk for row in response.context["cl"].result_list} == {i.pk for i in images}
        # The sidebar offers the newest requests by their prompt.
        assert f"Request #{request.pk}: A red bicycle by the sea" in html_of(response)


class RequestAdminTests:
    def test_lists_requests_with_ready_counts_and_a_link(
        self, admin_client, campaign, make_image, make_task
    ):
        request, images = a_request(campaign, make_task, make_image, [4, 4])
        for image in images[:5]:
            image.status = "failed"
            image.save()
        html = html_of(admin_client.get(REQUESTS))
        assert "3 of 8 ready" in html
        assert f"{IMAGES}?task__request={request.pk}" in html
        page = html_of(
            admin_client.get(
                reverse("admin:imagen_assets_generationrequest_change", args=[request.pk])
            )
        )
        assert "3 of 8 ready" in page, page[page.find("field-ready_column") :][:600]
        assert "deletelink" not in page

    def test_no_query_per_row(
        self, admin_client, campaign, make_image, make_task, django_assert_max_num_queries
    ):
        a_request(campaign, make_task, make_image, [1])
        with CaptureQueriesContext(connection) as few:
            assert admin_client.get(REQUESTS).status_code == 200
        for _ in range(5):
            a_request(campaign, make_task, make_image, [2])
        with django_assert_max_num_queries(len(few)):
            admin_client.get(REQUESTS)


class SupportGroupTests:
    @pytest.mark.parametrize(
        "url", [reverse("admin:index"), reverse("admin:app_list", args=["imagen_assets"])]
    )
    def test_support_models_in_their_own_group(self, admin_client, url):
        html = html_of(admin_client.get(url))
        assert ">Support</a>" in html
        support = html[html.index(">Support</a>") :]
        main = html[: html.index(">Support</a>")]
        for name in ("Generation tasks", "Webhook events", "Provider health"):
            assert name in support and name not in main.split('id="content-main"')[-1]
        assert "Generated images" in main and "Campaigns" in main
        if url == reverse("admin:index"):  # django-rq's queues join the group
            assert ">Queues</a>" in support and "app-django_rq" not in html
