"""Per-user daily quotas: services.check_user_quota inside request_images, the site's
defaults, the admin's per-user override, the refusal's words, and nothing spent on refusal.
(The race of two requests at the limit is tests/integration/test_quota_race.py.)"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from django.core import checks
from django.urls import reverse
from django.utils import timezone

from imagen_assets import services
from imagen_assets.checks import check_user_quotas
from imagen_assets.models import (
    Activity,
    Campaign,
    GeneratedImage,
    GenerationRequest,
    GenerationTask,
    UserQuota,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def quota(settings: Any, priced: dict[str, Any]) -> Any:
    """Set the site's quotas: ``quota(images=50, spend="1.00")``; days in Europe/Paris."""
    settings.TIME_ZONE = "Europe/Paris"

    def set_quota(*, images: Any = None, spend: Any = None) -> None:
        settings.IMAGEN_ASSETS = {
            **priced,
            "USER_DAILY_IMAGES": images,
            "USER_DAILY_SPEND": spend,
        }

    return set_quota


@pytest.fixture
def ann(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("ann", password="pw", is_staff=True)


def used(campaign: Campaign, user: Any, images: int, **fields: Any) -> GenerationTask:
    """A task of ``images`` images ``user`` asked for (today unless ``created_at``)."""
    fields.setdefault("status", "succeeded")
    fields.setdefault("estimated_cost", Decimal("0.04") * images)
    fields.setdefault("cost", fields["estimated_cost"] if fields["status"] == "succeeded" else None)
    return GenerationTask.objects.create(
        campaign=campaign,
        provider="wavespeed",
        model="m",
        prompt="p",
        aspect_ratio="1:1",
        num_images=images,
        requested_by=user,
        **fields,
    )


def fill(campaign: Campaign, user: Any, images: int, **fields: Any) -> None:
    """``images`` images asked for by ``user``, in tasks of at most four."""
    while images > 0:
        used(campaign, user, min(4, images), **fields)
        images -= 4


def ask(campaign: Campaign, user: Any, count: int, **kwargs: Any) -> list[GenerationTask]:
    return services.request_images(
        campaign=campaign, prompt="Kites", count=count, user=user, provider="wavespeed", **kwargs
    )


def snapshot() -> tuple[int, int, int, int]:
    return (
        GenerationRequest.objects.count(),
        GenerationTask.objects.count(),
        GeneratedImage.objects.count(),
        Activity.objects.count(),
    )


class ImageQuotaTests:
    def test_the_refusal_names_the_limit_the_use_and_the_reset_and_spends_nothing(
        self, quota, campaign, ann, enqueued, django_capture_on_commit_callbacks
    ):
        quota(images=50)
        fill(campaign, ann, 48)
        before = snapshot()

        with (
            django_capture_on_commit_callbacks(execute=True),
            pytest.raises(services.QuotaExceeded) as refused,
        ):
            ask(campaign, ann, 4)

        assert str(refused.value) == (
            "You have used 48 of your 50 images today; this asks for 4. "
            "Your quota resets at midnight (Europe/Paris)."
        )
        assert snapshot() == before
        assert enqueued == []

    def test_asking_for_exactly_what_is_left_passes(self, quota, campaign, ann, enqueued):
        quota(images=50)
        fill(campaign, ann, 48)

        tasks = ask(campaign, ann, 2)

        assert sum(task.num_images for task in tasks) == 2

    def test_failed_and_cancelled_tasks_do_not_count(self, quota, campaign, ann, enqueued):
        quota(images=8)
        used(campaign, ann, 4, status="failed")
        used(campaign, ann, 4, status="cancelled")
        used(campaign, ann, 4, status="processing")

        ask(campaign, ann, 4)  # 4 open + 4 = 8
        with pytest.raises(services.QuotaExceeded, match="used 8 of your 8 images"):
            ask(campaign, ann, 1)

    def test_a_day_is_the_sites_day(self, quota, campaign, ann, enqueued):
        quota(images=4)
        now = timezone.now()
        paris_midnight = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
        used(campaign, ann, 4, created_at=paris_midnight - dt.timedelta(minutes=1))  # yesterday
        used(campaign, ann, 1, created_at=paris_midnight + dt.timedelta(minutes=1))  # today

        with pytest.raises(services.QuotaExceeded, match="used 1 of your 4 images"):
            ask(campaign, ann, 4)
        ask(campaign, ann, 3)

    def test_other_users_and_other_campaigns_share_nothing_but_the_user(
        self, quota, campaign, ann, django_user_model, enqueued
    ):
        quota(images=4)
        bob = django_user_model.objects.create_user("bob")
        other = Campaign.objects.create(name="Autumn", slug="autumn")
        used(campaign, bob, 4)
        used(other, ann, 3)

        with pytest.raises(services.QuotaExceeded, match="used 3 of your 4 images"):
            ask(campaign, ann, 2)  # the quota is per user, across campaigns
        ask(campaign, ann, 1)

    def test_no_user_or_no_limit_checks_nothing(
        self, quota, campaign, ann, enqueued, django_assert_num_queries
    ):
        quota(images=None, spend=None)
        fill(campaign, ann, 100)
        services.check_user_quota(None, count=100, cost=Decimal(100))
        with django_assert_num_queries(1):  # the user's override, if any
            services.check_user_quota(ann, count=100, cost=Decimal(100))


class SpendQuotaTests:
    def test_the_refusal_is_in_dollars_with_two_decimals(self, quota, campaign, ann, enqueued):
        quota(spend="1.00")
        fill(campaign, ann, 24)  # 24 x $0.04 = $0.96
        before = snapshot()

        with pytest.raises(services.QuotaExceeded) as refused:
            ask(campaign, ann, 2)

        assert str(refused.value) == (
            "You have used $0.96 of your $1.00 daily spend today; this would cost $0.08. "
            "Your quota resets at midnight (Europe/Paris)."
        )
        assert snapshot() == before
        assert enqueued == []
        ask(campaign, ann, 1)  # $1.00 exactly is allowed

    def test_an_open_task_counts_its_estimate_a_finished_one_its_cost(
        self, quota, campaign, ann, enqueued
    ):
        quota(spend="0.20")
        used(campaign, ann, 4, status="processing", estimated_cost=Decimal("0.16"))
        used(
            campaign, ann, 4, status="succeeded", estimated_cost=Decimal("0.16"), cost=Decimal("0")
        )  # billed nothing after all

        with pytest.raises(services.QuotaExceeded, match=r"used \$0.16 of your \$0.20"):
            ask(campaign, ann, 2)
        ask(campaign, ann, 1)


class OverrideTests:
    def test_a_users_override_replaces_the_site_default_field_by_field(
        self, quota, campaign, ann, enqueued
    ):
        quota(images=4, spend="0.20")
        UserQuota.objects.create(user=ann, images_per_day=10)
        fill(campaign, ann, 4)

        ask(campaign, ann, 1)  # 5 images: above the site's 4, within ann's 10
        with pytest.raises(services.QuotaExceeded, match=r"daily spend"):
            ask(campaign, ann, 1)  # the site's $0.20 still applies: $0.20 used

    def test_no_daily_quota_lifts_both(self, quota, campaign, ann, enqueued):
        quota(images=1, spend="0.01")
        UserQuota.objects.create(user=ann, images_per_day=1, unlimited=True)

        ask(campaign, ann, 8)

    def test_an_override_limits_a_user_when_the_site_has_none(self, quota, campaign, ann, enqueued):
        quota()
        UserQuota.objects.create(user=ann, images_per_day=2)

        with pytest.raises(services.QuotaExceeded, match="used 0 of your 2 images"):
            ask(campaign, ann, 3)


class GenerateFormTests:
    def test_the_generate_page_says_what_is_left_before_anything_is_asked(
        self, client, quota, campaign, ann
    ):
        from django.contrib.auth.models import Permission

        ann.user_permissions.add(
            *Permission.objects.filter(codename__in=["generate_images", "view_campaign"])
        )
        client.force_login(ann)
        url = reverse("admin:imagen_assets_campaign_generate", args=[campaign.pk])
        assert "imagen-quota-note" not in client.get(url).content.decode()  # no limit

        quota(images=5, spend="2.00")
        html = client.get(url).content.decode()
        assert "0 of your 5 images used today." in html
        assert "$0.00 of your $2.00 daily spend used." in html
        assert "Your quota resets at midnight (Europe/Paris)." in html

    def test_the_generate_page_shows_the_refusal_and_queues_nothing(
        self, client, quota, campaign, ann, enqueued
    ):
        from django.contrib.auth.models import Permission

        quota(images=2)
        ann.user_permissions.add(
            *Permission.objects.filter(codename__in=["generate_images", "view_campaign"])
        )
        client.force_login(ann)

        response = client.post(
            reverse("admin:imagen_assets_campaign_generate", args=[campaign.pk]),
            {
                "imagen_generate": "1",
                "prompt": "Kites",
                "count": "3",
                "aspect_ratio": "1:1",
                "provider": "wavespeed",
            },
        )

        assert response.status_code == 200
        errors = [str(e) for errs in response.context["form"].errors.values() for e in errs]
        assert errors == [
            "You have used 0 of your 2 images today; this asks for 3. "
            "Your quota resets at midnight (Europe/Paris)."
        ]
        assert not GenerationTask.objects.exists()
        assert enqueued == []


class SettingCheckTests:
    @pytest.mark.parametrize("value", [-1, 2.5, "50", True])
    def test_invalid_images_are_e090(self, settings, value):
        settings.IMAGEN_ASSETS = {**settings.IMAGEN_ASSETS, "USER_DAILY_IMAGES": value}
        assert [m.id for m in check_user_quotas()] == ["imagen_assets.E090"]

    @pytest.mark.parametrize("value", ["-1", "ten", [], "NaN", False])
    def test_invalid_spend_is_e091(self, settings, value):
        settings.IMAGEN_ASSETS = {**settings.IMAGEN_ASSETS, "USER_DAILY_SPEND": value}
        [message] = check_user_quotas()
        assert message.id == "imagen_assets.E091"
        assert message.level == checks.ERROR

    @pytest.mark.parametrize(
        ("images", "spend"), [(None, None), (0, "0"), (50, "25.00"), (1, 3), (5, Decimal("2.5"))]
    )
    def test_valid_values_pass(self, settings, images, spend):
        settings.IMAGEN_ASSETS = {
            **settings.IMAGEN_ASSETS,
            "USER_DAILY_IMAGES": images,
            "USER_DAILY_SPEND": spend,
        }
        assert check_user_quotas() == []

    def test_a_request_on_an_invalid_setting_is_refused_not_unlimited(
        self, quota, campaign, ann, enqueued
    ):
        quota(images="50")
        with pytest.raises(services.GenerationRequestError, match="E090 or E091"):
            ask(campaign, ann, 1)
        assert not GenerationTask.objects.exists()


class QuotaAdminTests:
    def test_the_list_and_the_page_show_the_limits_and_todays_use(
        self, admin_client, quota, campaign, ann
    ):
        quota(images=50, spend="10.00")
        override = UserQuota.objects.create(user=ann, spend_per_day=Decimal("2.50"))
        fill(campaign, ann, 6)

        listing = admin_client.get(reverse("admin:imagen_assets_userquota_changelist"))
        detail = admin_client.get(
            reverse("admin:imagen_assets_userquota_change", args=[override.pk])
        )

        assert listing.status_code == detail.status_code == 200
        text = listing.content.decode()
        assert "Site default (50)" in text and "$2.50" in text
        assert "6 of 50 images, $0.24 of $2.50; the day resets at midnight (Europe/Paris)." in (
            detail.content.decode()
        )

    def test_an_override_is_added_in_the_admin(self, admin_client, ann):
        response = admin_client.post(
            reverse("admin:imagen_assets_userquota_add"),
            {"user": ann.pk, "images_per_day": "20", "spend_per_day": ""},
        )

        assert response.status_code == 302
        saved = UserQuota.objects.get(user=ann)
        assert (saved.images_per_day, saved.spend_per_day, saved.unlimited) == (20, None, False)
