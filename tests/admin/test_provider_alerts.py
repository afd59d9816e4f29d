"""The admin says when a provider is not answering or refused the API key (P7, P4), above the
lists and the generate form, and shows each provider's health."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from imagen_assets.models import ProviderHealth
from imagen_assets.status import BreakerState

pytestmark = pytest.mark.django_db

LISTS = [
    "admin:imagen_assets_campaign_changelist",
    "admin:imagen_assets_generatedimage_changelist",
    "admin:imagen_assets_generationtask_changelist",
]


def down(alias: str = "sandbox") -> ProviderHealth:
    now = timezone.now()
    return ProviderHealth.objects.create(
        provider=alias,
        state=BreakerState.OPEN,
        failures=5,
        failing_since=now - timedelta(minutes=4),
        retry_at=now + timedelta(seconds=30),
        last_error="Sandbox: no HTTP answer: could not connect (ConnectError)",
    )


def key_refused(alias: str, name: str) -> ProviderHealth:
    return ProviderHealth.objects.create(
        provider=alias,
        key_refused_at=timezone.now(),
        key_refused_message=(
            f"{name} refused the API key (HTTP 401): check "
            f"IMAGEN_ASSETS['PROVIDERS'][{alias!r}]['OPTIONS']['API_KEY']."
        ),
    )


def page_text(response: Any) -> str:
    return response.content.decode()


class BannerTests:
    @pytest.mark.parametrize("url_name", LISTS)
    def test_a_provider_not_answering_is_shown_above_the_lists(self, admin_client, url_name):
        down()

        text = page_text(admin_client.get(reverse(url_name)))

        assert "Sandbox is not answering since" in text
        assert "new jobs wait until it recovers." in text

    @pytest.mark.parametrize("url_name", LISTS)
    def test_nothing_is_said_while_every_provider_answers(self, admin_client, url_name):
        ProviderHealth.objects.create(provider="sandbox")  # closed, no alert

        text = page_text(admin_client.get(reverse(url_name)))

        assert "not answering" not in text
        assert "Configuration alert" not in text

    def test_the_generate_form_says_it_too(self, admin_client, campaign):
        down()

        response = admin_client.get(
            reverse("admin:imagen_assets_campaign_generate", args=[campaign.pk])
        )

        assert response.status_code == 200
        assert "Sandbox is not answering since" in page_text(response)

    def test_a_refused_key_is_a_configuration_alert_naming_the_setting(
        self, admin_client, settings
    ):
        settings.IMAGEN_ASSETS["PROVIDERS"]["wave"]["OPTIONS"]["API_KEY"] = "sk-live-very-secret"
        key_refused("wave", "Wave")

        text = page_text(admin_client.get(reverse("admin:imagen_assets_campaign_changelist")))

        assert "Configuration alert since" in text
        assert "Wave refused the API key (HTTP 401)" in text
        assert "IMAGEN_ASSETS[&#x27;PROVIDERS&#x27;][&#x27;wave&#x27;]" in text
        assert "sk-live-very-secret" not in text


class HealthListTests:
    def test_the_health_list_shows_each_provider_and_nobody_edits_it(self, admin_client):
        down()
        key_refused("wave", "Wave")

        response = admin_client.get(reverse("admin:imagen_assets_providerhealth_changelist"))

        text = page_text(response)
        assert response.status_code == 200
        assert "Not answering" in text
        assert "Wave (wave)" in text
        assert "could not connect" in text
        add = admin_client.get(reverse("admin:imagen_assets_providerhealth_add"))
        assert add.status_code == 403
