"""The "Generate a batch" preview in headless Chromium, on a desktop and a phone: the
matrix, the price and the budget left are readable, nothing is clipped, no console error.
Screenshots go to $IMAGEN_SCREENSHOTS (default .run/screenshots)."""

from __future__ import annotations

import copy
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from imagen_assets.models import Campaign, GenerationTask
from tests.browser.test_admin_flow import browser_page  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.browser]

SHOTS = Path(
    os.environ.get(
        "IMAGEN_SCREENSHOTS", Path(__file__).resolve().parents[2] / ".run" / "screenshots"
    )
)


def test_batch_preview_on_desktop_and_phone(
    settings: Any,
    live_server: Any,
    browser_page: Any,  # noqa: F811
) -> None:
    config = copy.deepcopy(settings.IMAGEN_ASSETS)
    config["PROVIDERS"]["sandbox"]["OPTIONS"]["PRICE_PER_IMAGE"] = "0.04"
    settings.IMAGEN_ASSETS = config
    get_user_model().objects.create_superuser("marketer", "m@example.com", "spring-2026")
    campaign = Campaign.objects.create(
        name="Spring launch",
        slug="spring-launch",
        brand_prompt="Pastel palette, soft daylight.",
        budget=Decimal("50.00"),
    )
    page = browser_page
    errors: list[str] = []
    failed: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "marketer")
    page.fill("#id_password", "spring-2026")
    page.click("input[type=submit]")
    page.goto(f"{live_server.url}/admin/imagen_assets/campaign/{campaign.pk}/change/")
    page.click("a.imagen-generate-batch-link")
    page.fill(
        "#id_prompts",
        "A red bicycle leaning on a sea wall at dawn\n"
        "春天的樱花\uff0c柔和的晨光\uff0c公园长椅\n"
        "Two cups of tea on a wooden table, steam rising, a window with rain behind",
    )
    page.check("input[name=aspect_ratios][value='16:9']")
    page.check("input[name=aspect_ratios][value='9:16']")
    page.fill("#id_count", "2")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "batch-form-1360.png"), full_page=True)
    page.click("input[type=submit].default")
    page.wait_for_selector(".imagen-batch-matrix")

    # 3 prompts x 3 ratios x 2 images at the sandbox's price.
    assert page.inner_text("[data-imagen-batch-count]") == "18"
    assert page.inner_text("[data-imagen-batch-cost]") == "$0.72"
    assert page.inner_text("[data-imagen-batch-left]") == "$50.00"
    headers = page.locator(".imagen-batch-matrix thead th").all_inner_texts()
    assert [h.split("\n")[0] for h in headers[2:5]] == ["1:1", "9:16", "16:9"]
    assert "春天的樱花" in page.inner_text(".imagen-batch-matrix")
    confirm = page.locator("button[name=imagen_batch_confirm]")
    assert confirm.is_visible()
    page.screenshot(path=str(SHOTS / "batch-preview-1360.png"), full_page=True)

    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(SHOTS / "batch-preview-390.png"), full_page=True)
    # The page is not wider than the phone: the matrix scrolls inside its own box.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert confirm.is_visible()
    assert not GenerationTask.objects.exists()
    # The favicon's 404 is the site's (issue 8 lists it; fixed on its own), not this page's.
    assert [url for url in failed if not url.endswith("/favicon.ico")] == []
    assert [e for e in errors if "404" not in e or len(failed) > 1] == [], (errors, failed)
