"""Honest states in headless Chromium: the campaign page with ready, withheld, failed and
in-progress images at desktop and phone widths, and its summary refreshing in place."""

from __future__ import annotations

import io
from decimal import Decimal
from typing import Any

import pytest
from django.core.files.base import ContentFile
from PIL import Image

from imagen_assets.models import Campaign, GeneratedImage, GenerationRequest, GenerationTask
from tests.browser.test_admin_flow import browser_page, shot  # noqa: F401 (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def png(color: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(buffer, "PNG")
    return buffer.getvalue()


def build_campaign() -> tuple[Campaign, GeneratedImage]:
    campaign = Campaign.objects.create(name="Spring launch", slug="spring", budget=Decimal(50))
    request = GenerationRequest.objects.create(
        campaign=campaign, prompt="A red bicycle by the sea at dawn", count=6
    )

    def task(**fields: Any) -> GenerationTask:
        defaults: dict[str, Any] = {
            "provider": "sandbox",
            "model": "wavespeed-ai/imagen4",
            "prompt": "A red bicycle by the sea at dawn",
            "aspect_ratio": "1:1",
            "num_images": 1,
            "status": "succeeded",
            "estimated_cost": Decimal("0.04"),
            "cost": Decimal("0.04"),
        }
        defaults.update(fields)
        return GenerationTask.objects.create(campaign=campaign, request=request, **defaults)

    for color in ("teal", "orange"):
        image = GeneratedImage(task=task(), campaign=campaign, index=0, status="succeeded")
        image.file.save(f"{color}.png", ContentFile(png(color)), save=False)
        image.thumbnail.save(f"t-{color}.png", ContentFile(png(color)), save=False)
        image.save()
    GeneratedImage.objects.create(
        task=task(cost=Decimal(0), outputs=[]),
        campaign=campaign,
        index=0,
        status="filtered",
        error_message="The provider returned 0 of 1 images; this one was withheld.",
    )
    GeneratedImage.objects.create(
        task=task(
            status="failed",
            cost=Decimal(0),
            error_message="Upstream returned: invalid prompt (sandbox-simulated failure)",
        ),
        campaign=campaign,
        index=0,
        status="failed",
    )
    GeneratedImage.objects.create(
        task=task(status="succeeded", progress=100), campaign=campaign, index=0, status="processing"
    )
    generating = GeneratedImage.objects.create(
        task=task(status="processing", progress=40, cost=None),
        campaign=campaign,
        index=0,
        status="processing",
    )
    return campaign, generating


def watch(page: Any, errors: list[str]) -> None:
    """Collect console errors and failed requests (the favicon 404 is another part's fix)."""
    page.on(
        "response",
        lambda r: (
            errors.append(f"{r.status} {r.url}")
            if r.status >= 400 and not r.url.endswith("/favicon.ico")
            else None
        ),
    )
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and "Failed to load resource" not in msg.text
            else None
        ),
    )


def test_campaign_page_honest_states(browser_page, live_server, admin_user, settings, tmp_path):  # noqa: F811
    settings.MEDIA_ROOT = str(tmp_path)
    campaign, generating = build_campaign()
    errors: list[str] = []
    url = f"{live_server.url}/admin/imagen_assets/campaign/{campaign.pk}/change/"
    page = browser_page
    watch(page, errors)
    page.goto(f"{live_server.url}/admin/login/?next={url}")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "password")
    page.click("input[type=submit]")
    for width, height in ((1360, 900), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        page.goto(url)
        page.wait_for_selector("[data-imagen-summary-url]")

        summary = page.locator(".imagen-summary-live")
        assert "2 of 6 ready" in summary.inner_text()
        withheld = summary.locator('[data-imagen-count="withheld"]').inner_text()
        assert withheld == "1 withheld by provider"
        assert summary.locator('[data-imagen-count="failed"]').inner_text() == "1 failed"
        gallery = page.locator(".imagen-gallery").inner_text()
        assert "Storing" in gallery and "Generating 40%" in gallery
        assert "Generating 100%" not in gallery
        shot(page, f"honest-campaign-{width}")

    # The summary refreshes in place once the last images are done; the form stays.
    page.set_viewport_size({"width": 1360, "height": 900})
    page.goto(url)
    page.wait_for_selector("[data-imagen-summary-open]")
    page.fill("#id_brief", "Typed while images were made")
    page.locator("#id_brief").evaluate("el => el.blur()")
    GeneratedImage.objects.filter(campaign=campaign, status="processing").update(status="failed")
    page.wait_for_selector("[data-imagen-summary-open]", state="detached", timeout=15_000)
    assert page.locator('[data-imagen-count="failed"]').inner_text() == "3 failed"
    assert page.input_value("#id_brief") == "Typed while images were made"
    assert not errors, errors
    assert generating.pk
