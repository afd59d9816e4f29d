"""The "Generate images" action and the campaign page's generate form."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.messages import get_messages
from django.urls import reverse

from imagen_assets import jobs
from imagen_assets.models import Campaign, GeneratedImage, GenerationTask
from imagen_assets.templatetags.imagen_admin import money, unit_price

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:imagen_assets_campaign_changelist"


def open_action(client: Any, *campaigns: Campaign) -> Any:
    """Choose the action on the changelist, as the action bar does."""
    return client.post(
        reverse(CHANGELIST),
        {
            "action": "generate_images",
            ACTION_CHECKBOX_NAME: [c.pk for c in campaigns],
            "index": "0",
        },
    )


def submit_action(client: Any, *campaigns: Campaign, **fields: Any) -> Any:
    """Submit the generate form shown by the action."""
    data = {
        "action": "generate_images",
        ACTION_CHECKBOX_NAME: [c.pk for c in campaigns],
        "imagen_generate": "1",
        "prompt": "A red bicycle by the sea",
        "count": "4",
        "aspect_ratio": "16:9",
        "provider": "sandbox",
        "seed": "",
        "negative_prompt": "",
    }
    data.update(fields)
    return client.post(reverse(CHANGELIST), data)


def form_errors(response: Any) -> list[str]:
    form = response.context["form"]
    return [str(error) for errors in form.errors.values() for error in errors]


class GeneratePageQueryTests:
    def test_query_count_does_not_grow_with_the_selected_campaigns(self, admin_client) -> None:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        counts = []
        for n in (1, 10):
            campaigns = [
                Campaign.objects.create(name=f"C{n}-{i}", slug=f"c{n}-{i}", budget=10)
                for i in range(n)
            ]
            with CaptureQueriesContext(connection) as queries:
                assert open_action(admin_client, *campaigns).status_code == 200
            counts.append(len(queries))

        assert counts[0] == counts[1]


class MoneyFormatTests:
    def test_amounts_have_two_decimals_and_sub_cent_prices_read_in_cents(self) -> None:
        assert money(Decimal("0.0425")) == "$0.04"
        assert unit_price(Decimal("0.0425")) == "4.25\N{CENT SIGN}"
        assert unit_price(Decimal("0.04")) == "$0.04"
        assert money(Decimal("0.04")) == "$0.04"
        assert money(Decimal("1.2")) == "$1.20"
        assert money(Decimal("0")) == "$0.00"
        assert money(Decimal("1234.5")) == "$1,234.50"


class GenerateActionFormTests:
    def test_shows_the_form_with_the_estimated_price(self, admin_client, campaign, priced):
        campaign.default_provider = "wavespeed"
        campaign.save()

        response = open_action(admin_client, campaign)

        assert response.status_code == 200
        assert "imagen_assets/admin/generate_images.html" in [t.name for t in response.templates]
        html = response.content.decode()
        assert "Estimated price" in html
        assert "$0.16" in html  # 4 images x $0.04
        assert "$0.04" in html
        assert "Pastel palette, soft daylight." in html  # the brand prompt that is appended
        assert 'name="csrfmiddlewaretoken"' in html
        assert 'class="breadcrumbs"' in html
        assert "imagen_assets/admin.js" in html
        form = response.context["form"]
        assert form["provider"].value() == "wavespeed"
        assert form["count"].value() == 4

    def test_prices_every_selected_campaign_and_the_total(self, admin_client, campaign, priced):
        other = Campaign.objects.create(name="Summer", slug="summer", default_provider="wavespeed")
        campaign.default_provider = "wavespeed"
        campaign.save()

        response = open_action(admin_client, campaign, other)

        assert response.context["per_campaign"] == "$0.16"
        assert response.context["total"] == "$0.32"
        assert "$0.32" in response.content.decode()

    def test_provider_options_carry_price_data_for_the_live_estimate(
        self, admin_client, campaign, priced
    ):
        response = open_action(admin_client, campaign)
        html = response.content.decode()
        assert 'data-price="0.04"' in html
        assert 'data-price="0.0425"' in html
        assert 'data-negative="0"' in html  # Wave has no negative prompt

    def test_aspect_ratios_show_the_pixel_size_of_the_provider(self, admin_client, campaign):
        response = open_action(admin_client, campaign)
        assert "16:9 · 1408\N{MULTIPLICATION SIGN}768" in response.content.decode()

    def test_unconfigured_providers_are_not_offered(self, admin_client, campaign):
        response = open_action(admin_client, campaign)
        choices = dict(response.context["form"].fields["provider"].choices)
        assert list(choices) == ["sandbox"]  # wave and wavespeed have no API key here

    def test_defaults_come_from_the_campaign(self, admin_client, campaign, priced):
        campaign.default_aspect_ratio = "9:16"
        campaign.default_negative_prompt = "text, watermark"
        campaign.save()

        form = open_action(admin_client, campaign).context["form"]

        assert form["aspect_ratio"].value() == "9:16"
        assert form["negative_prompt"].value() == "text, watermark"
        assert form["provider"].value() == "sandbox"  # the site default


class GenerateActionSubmitTests:
    def test_queues_tasks_and_images_and_reports(
        self, admin_client, admin_user, campaign, enqueued, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks(execute=True):
            response = submit_action(admin_client, campaign, seed="7")

        assert response.status_code == 302
        assert response["Location"] == (
            reverse("admin:imagen_assets_generatedimage_changelist")
            + f"?campaign__id__exact={campaign.pk}"
        )
        tasks = list(GenerationTask.objects.filter(campaign=campaign))
        assert len(tasks) == 1
        task = tasks[0]
        assert task.num_images == 4
        assert task.aspect_ratio == "16:9"
        assert task.seed == 7
        assert task.requested_by == admin_user
        assert task.prompt == "A red bicycle by the sea\n\nPastel palette, soft daylight."
        assert GeneratedImage.objects.filter(campaign=campaign, status="queued").count() == 4
        assert [(call.func, call.args) for call in enqueued] == [(jobs.submit_many, ([task.pk],))]
        messages = [str(m) for m in get_messages(response.wsgi_request)]
        assert messages == [
            "Queued 4 images for Spring launch on Sandbox. They will appear here as they finish."
        ]

    def test_queues_for_every_selected_campaign(
        self, admin_client, campaign, enqueued, django_capture_on_commit_callbacks
    ):
        other = Campaign.objects.create(name="Summer", slug="summer")
        with django_capture_on_commit_callbacks(execute=True):
            response = submit_action(admin_client, campaign, other, count="2")

        assert response.status_code == 302
        assert f"campaign__id__in={campaign.pk},{other.pk}" in response["Location"] or (
            f"campaign__id__in={other.pk},{campaign.pk}" in response["Location"]
        )
        assert GeneratedImage.objects.filter(campaign=campaign).count() == 2
        assert GeneratedImage.objects.filter(campaign=other).count() == 2
        tasks = GenerationTask.objects.filter(campaign__in=[campaign, other])
        assert sorted(call.args for call in enqueued) == sorted(
            ([pk],) for pk in tasks.values_list("pk", flat=True)
        )
        assert {call.func for call in enqueued} == {jobs.submit_many}

    @pytest.mark.parametrize(
        ("fields", "expected"),
        [
            # Not "This field is required.": with a template the prompt is optional.
            ({"prompt": ""}, "Write a prompt."),
            ({"prompt": "   "}, "Write a prompt."),
            ({"count": "0"}, "greater than or equal to 1"),
            ({"count": "101"}, "less than or equal to 100"),
            ({"count": "many"}, "Enter a whole number."),
            ({"provider": "nope"}, "Select a valid choice."),
            ({"aspect_ratio": "2:1"}, "Select a valid choice."),
            ({"seed": "-1"}, "greater than or equal to 0"),
        ],
    )
    def test_invalid_input_is_a_form_error_and_creates_nothing(
        self, admin_client, campaign, enqueued, django_capture_on_commit_callbacks, fields, expected
    ):
        with django_capture_on_commit_callbacks(execute=True):
            response = submit_action(admin_client, campaign, **fields)

        assert response.status_code == 200
        assert any(expected in error for error in form_errors(response)), form_errors(response)
        assert not GenerationTask.objects.exists()
        assert not GeneratedImage.objects.exists()
        assert enqueued == []

    def test_negative_prompt_on_a_provider_without_one_is_refused(
        self, admin_client, campaign, priced, enqueued
    ):
        response = submit_action(admin_client, campaign, provider="wave", negative_prompt="no text")

        assert response.status_code == 200
        assert form_errors(response) == ["Wave does not accept a negative prompt; leave it empty."]
        assert not GenerationTask.objects.exists()

    def test_negative_prompt_is_sent_where_supported(
        self, admin_client, campaign, priced, enqueued, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks(execute=True):
            submit_action(admin_client, campaign, provider="wavespeed", negative_prompt="no text")
        assert GenerationTask.objects.get().negative_prompt == "no text"

    def test_budget_exceeded_is_a_form_error_and_creates_nothing(
        self, admin_client, campaign, priced, enqueued, django_capture_on_commit_callbacks
    ):
        campaign.budget = Decimal("0.10")
        campaign.save()

        with django_capture_on_commit_callbacks(execute=True):
            response = submit_action(admin_client, campaign, provider="wavespeed", count="4")

        assert response.status_code == 200
        errors = form_errors(response)
        assert len(errors) == 1
        assert "$0.16" in errors[0]
        assert "$0.10" in errors[0]
        assert not GenerationTask.objects.exists()
        assert enqueued == []
        assert response.context["rows"][0]["over"] is True

    def test_a_refused_campaign_leaves_the_others_untouched(
        self, admin_client, campaign, priced, enqueued, django_capture_on_commit_callbacks
    ):
        poor = Campaign.objects.create(name="Tiny", slug="tiny", budget=Decimal("0.01"))

        with django_capture_on_commit_callbacks(execute=True):
            response = submit_action(admin_client, campaign, poor, provider="wavespeed")

        assert response.status_code == 200
        assert any(error.startswith("Tiny: ") for error in form_errors(response))
        assert not GenerationTask.objects.exists()
        assert enqueued == []


class BudgetWarningTests:
    """The page flags a campaign exactly when the request would be refused (services.Spend)."""

    def open_page(self, client: Any, campaign: Campaign, **data: str) -> Any:
        url = reverse("admin:imagen_assets_campaign_generate", args=[campaign.pk])
        return client.post(url, {"imagen_generate": "1", "prompt": "", **data})

    def test_spending_the_budget_exactly_is_not_flagged_one_cent_more_is(
        self, admin_client, campaign, priced
    ):
        campaign.budget = Decimal("0.16")
        campaign.save()

        exact = self.open_page(admin_client, campaign, provider="wavespeed", count="4")
        over = self.open_page(admin_client, campaign, provider="wavespeed", count="5")

        assert exact.context["rows"][0]["over"] is False
        assert over.context["rows"][0]["over"] is True
        assert 'data-left="0.16"' in over.content.decode()

    def test_a_campaign_already_over_its_budget_is_flagged_even_for_a_free_request(
        self, admin_client, campaign, priced, make_task, enqueued
    ):
        campaign.budget = Decimal("0.10")
        campaign.save()
        make_task(campaign, status="succeeded", cost=Decimal("0.30"))

        page = self.open_page(admin_client, campaign, provider="sandbox", count="1")
        refused = self.open_page(
            admin_client,
            campaign,
            provider="sandbox",
            count="1",
            prompt="Kites",
            aspect_ratio="1:1",
        )

        assert page.context["rows"][0]["over"] is True
        assert "data-overspent" in page.content.decode()  # admin.js keeps the flag
        assert form_errors(refused) == [
            "This would cost $0.00 but only $0.00 of the $0.10 budget is left."
        ]
        assert GenerationTask.objects.count() == 1  # only the one that overspent


class GenerateViewTests:
    """The same form at <id>/generate/, opened by the campaign page's button."""

    def url(self, campaign: Campaign) -> str:
        return reverse("admin:imagen_assets_campaign_generate", args=[campaign.pk])

    def test_get_shows_the_form(self, admin_client, campaign):
        response = admin_client.get(self.url(campaign))
        assert response.status_code == 200
        html = response.content.decode()
        assert "Estimated price" in html
        assert 'name="action"' not in html  # not the action's form
        assert reverse("admin:imagen_assets_campaign_change", args=[campaign.pk]) in html

    def test_post_queues_and_redirects(
        self, admin_client, campaign, enqueued, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks(execute=True):
            response = admin_client.post(
                self.url(campaign),
                {
                    "imagen_generate": "1",
                    "prompt": "Kites over dunes",
                    "count": "3",
                    "aspect_ratio": "1:1",
                    "provider": "sandbox",
                },
            )
        assert response.status_code == 302
        assert f"campaign__id__exact={campaign.pk}" in response["Location"]
        assert GeneratedImage.objects.filter(campaign=campaign).count() == 3
        task = GenerationTask.objects.get(campaign=campaign)
        assert [(call.func, call.args) for call in enqueued] == [(jobs.submit_many, ([task.pk],))]

    def test_post_with_errors_shows_them(self, admin_client, campaign, enqueued):
        response = admin_client.post(
            self.url(campaign),
            {
                "imagen_generate": "1",
                "prompt": "",
                "count": "3",
                "aspect_ratio": "1:1",
                "provider": "sandbox",
            },
        )
        assert response.status_code == 200
        assert "errornote" in response.content.decode()
        assert not GenerationTask.objects.exists()

    def test_unknown_campaign_is_404(self, admin_client):
        response = admin_client.get(reverse("admin:imagen_assets_campaign_generate", args=[999]))
        assert response.status_code == 404


class GeneratePermissionTests:
    def test_staff_without_the_permission_does_not_see_the_action(
        self, client, campaign, staff_user
    ):
        client.force_login(staff_user("view_campaign", "change_campaign"))
        response = client.get(reverse(CHANGELIST))
        assert response.status_code == 200
        assert "generate_images" not in response.content.decode()

    def test_staff_without_the_permission_cannot_submit_it(
        self, client, campaign, staff_user, enqueued
    ):
        client.force_login(staff_user("view_campaign", "change_campaign"))
        response = submit_action(client, campaign)
        # With no action available the changelist just renders again.
        assert response.status_code == 200
        assert "imagen_assets/admin/generate_images.html" not in [
            t.name for t in response.templates
        ]
        assert not GenerationTask.objects.exists()

    def test_staff_without_the_permission_gets_403_on_the_page(self, client, campaign, staff_user):
        client.force_login(staff_user("view_campaign", "change_campaign"))
        url = reverse("admin:imagen_assets_campaign_generate", args=[campaign.pk])
        assert client.get(url).status_code == 403
        change = client.get(reverse("admin:imagen_assets_campaign_change", args=[campaign.pk]))
        assert url not in change.content.decode()

    def test_staff_with_the_permission_can_generate(
        self, client, campaign, staff_user, enqueued, django_capture_on_commit_callbacks
    ):
        client.force_login(staff_user("view_campaign", "generate_images"))
        with django_capture_on_commit_callbacks(execute=True):
            response = submit_action(client, campaign)
        assert response.status_code == 302
        assert GeneratedImage.objects.count() == 4
