"""What the admin says about a provider's concurrency cap: "12 running, 188 waiting for the
provider" on the campaign's summary and on the provider health list."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from imagen_assets.models import Campaign, GenerationTask, ProviderHealth

pytestmark = pytest.mark.django_db


@pytest.fixture
def capped(settings: Any) -> None:
    config = dict(settings.IMAGEN_ASSETS)
    sandbox = dict(config["PROVIDERS"]["sandbox"])
    sandbox["OPTIONS"] = {**sandbox["OPTIONS"], "MAX_CONCURRENCY": 2}
    config["PROVIDERS"] = {**config["PROVIDERS"], "sandbox": sandbox}
    settings.IMAGEN_ASSETS = config


def tasks(campaign: Campaign, n: int, **fields: Any) -> None:
    for _ in range(n):
        task = GenerationTask.objects.create(
            campaign=campaign,
            provider="sandbox",
            model="wavespeed-ai/imagen4",
            prompt="Kites",
            aspect_ratio="1:1",
            num_images=1,
            **fields,
        )
        task.images.create(campaign=campaign, index=0)


def plain(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_campaign_summary_says_how_many_run_and_wait(admin_client, capped):
    campaign = Campaign.objects.create(name="Capped", slug="capped")
    tasks(campaign, 2, status="submitted", provider_task_id="x", submitted_at=timezone.now())
    tasks(campaign, 3)  # waiting for a slot
    other = Campaign.objects.create(name="Other", slug="other")
    tasks(other, 1)  # the cap is the account's: every campaign's tasks count

    url = reverse("admin:imagen_assets_campaign_summary", args=[campaign.pk])
    text = plain(admin_client.get(url).content.decode())

    assert "Sandbox: 2 running, 4 waiting for the provider" in text
    assert "(it takes 2 at once; all campaigns share it)" in text


def test_nothing_is_said_without_a_cap(admin_client):
    campaign = Campaign.objects.create(name="Free", slug="free")
    tasks(campaign, 3)

    url = reverse("admin:imagen_assets_campaign_summary", args=[campaign.pk])
    assert "waiting for the provider" not in admin_client.get(url).content.decode()


def test_the_provider_health_list_gives_the_counts_and_the_cap(admin_client, capped):
    campaign = Campaign.objects.create(name="Capped", slug="capped")
    tasks(campaign, 1, status="processing", provider_task_id="y", submitted_at=timezone.now())
    tasks(campaign, 2)
    ProviderHealth.objects.create(provider="sandbox")

    html = admin_client.get(reverse("admin:imagen_assets_providerhealth_changelist"))
    assert "1 running, 2 waiting for the provider (2 at once)" in plain(html.content.decode())
