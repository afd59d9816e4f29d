"""The admin as a marketer uses it, in headless Chromium, against the real pipeline:
live Django server, a real worker process, Redis and the sandbox provider over HTTP."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connections

from imagen_assets.models import Campaign, GeneratedImage, GenerationTask

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(
    os.environ.get(
        "IMAGEN_SCREENSHOTS", Path(__file__).resolve().parents[2] / ".run" / "screenshots"
    )
)


@pytest.fixture
def browser_page(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (Debian package chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes
    # between browser steps are ordinary blocking calls, which Django must be told are fine.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        page.set_default_timeout(30_000)
        yield page
        # ORM calls made while Playwright's loop ran got their own connections (Django keeps
        # them per context); close them here, or they keep the test database open.
        connections.close_all()
        browser.close()


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


class MarketerAdminFlowTests:
    def test_generate_watch_open_approve_and_reject(
        self,
        stack_env: dict[str, str],
        worker: Any,
        live_server: Any,
        browser_page: Any,
        sandbox: Any,
    ) -> None:
        sandbox.config.latency = 1.5  # long enough to see progress, short enough to wait
        get_user_model().objects.create_superuser("marketer", "m@example.com", "spring-2026")
        campaign = Campaign.objects.create(
            name="Spring launch",
            slug="spring-launch",
            # A team of one: the marketer reviews what they asked for (four eyes are
            # tested in tests/unit/test_review.py and the review screen's browser test).
            allow_self_approval=True,
            brand_prompt="Pastel palette.",
            default_aspect_ratio="16:9",
            budget=50,
        )
        page = browser_page
        page.goto(f"{live_server.url}/admin/")
        page.fill("#id_username", "marketer")
        page.fill("#id_password", "spring-2026")
        page.click("input[type=submit]")

        # The campaign list, then the "Generate images" action on the selected campaign.
        page.goto(f"{live_server.url}/admin/imagen_assets/campaign/")
        assert page.locator("#result_list").get_by_text("Spring launch").is_visible()
        shot(page, "1-campaigns")
        page.check(f"input[name=_selected_action][value='{campaign.pk}']")
        page.select_option("select[name=action]", "generate_images")
        page.click("button[name=index]")

        # The intermediate form, with its estimated price.
        page.wait_for_selector("textarea[name=prompt]")
        page.fill("textarea[name=prompt]", "A picnic on a hill of spring flowers")
        page.fill("input[name=count]", "3")
        page.check("input[name=aspect_ratio][value='16:9']")
        page.select_option("select[name=provider]", "wavespeed")
        assert re.search(r"\$0\.12", page.content()), "estimated price for 3 x $0.04"
        shot(page, "2-generate-form")
        page.click("input[type=submit][value='Generate images']")

        # Redirected to the images: they appear queued, then ready with thumbnails.
        page.wait_for_url(re.compile(r"/admin/imagen_assets/generatedimage/"))
        assert "Queued 3" in page.content() or "queued 3" in page.content().lower()
        shot(page, "3-images-queued")
        page.wait_for_function(
            "document.querySelectorAll('#result_list img').length >= 3", timeout=60_000
        )
        shot(page, "4-images-ready")
        images = list(GeneratedImage.objects.filter(campaign=campaign).order_by("index"))
        assert [image.status for image in images] == ["succeeded"] * 3
        assert all((image.width, image.height) == (1408, 768) for image in images)

        # Open one large and approve it on its page.
        first, second = images[0], images[1]
        page.goto(f"{live_server.url}/admin/imagen_assets/generatedimage/{first.pk}/change/")
        large = page.locator("img.imagen-large, .imagen-large img, img[src*='imagen/']").first
        assert large.evaluate("img => img.naturalWidth") == 1408
        page.fill(".imagen-review-form textarea >> nth=0", "Lovely light")
        page.click(".imagen-approve-button")
        page.wait_for_load_state()
        shot(page, "5-image-approved")
        first.refresh_from_db()
        assert first.review_status == "approved"
        assert first.reviewed_by.username == "marketer"
        assert first.review_note == "Lovely light"

        # Reject another from the list with the bulk action and a reason.
        page.goto(f"{live_server.url}/admin/imagen_assets/generatedimage/")
        page.check(f"input[name=_selected_action][value='{second.pk}']")
        page.select_option("select[name=action]", "reject_selected")
        page.click("button[name=index]")
        page.wait_for_selector("textarea[name=note]")
        page.fill("textarea[name=note]", "Off brand colours")
        shot(page, "6-reject-form")
        page.click("input.imagen-reject-button")
        page.wait_for_load_state()
        second.refresh_from_db()
        assert second.review_status == "rejected"
        assert second.review_note == "Off brand colours"
        assert list(campaign.approved_images()) == [first]
        shot(page, "7-after-review")


class LiveEstimateTests:
    """admin.js keeps the over-budget flag of the generate page in step with the server's rule."""

    def test_flags_a_campaign_as_the_estimate_passes_what_is_left(
        self, stack_env: dict[str, str], live_server: Any, browser_page: Any
    ) -> None:
        get_user_model().objects.create_superuser("marketer", "m@example.com", "spring-2026")
        tight = Campaign.objects.create(name="Tight", slug="tight", budget=Decimal("0.10"))
        spent = Campaign.objects.create(name="Spent", slug="spent", budget=Decimal("0.10"))
        GenerationTask.objects.create(
            campaign=spent,
            provider="wavespeed",
            model="m",
            prompt="p",
            aspect_ratio="1:1",
            num_images=1,
            status="succeeded",
            cost=Decimal("0.30"),
        )
        page = browser_page
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", "marketer")
        page.fill("#id_password", "spring-2026")
        page.click("input[type=submit]")

        def flagged(campaign: Campaign) -> bool:
            row = page.locator("tr.imagen-estimate-row", has_text=campaign.name)
            return "imagen-over-budget" in (row.get_attribute("class") or "")

        page.goto(f"{live_server.url}/admin/imagen_assets/campaign/{tight.pk}/generate/")
        page.select_option("select[name=provider]", "wavespeed")  # $0.04 an image
        page.fill("input[name=count]", "2")
        assert page.locator("[data-imagen-total] >> nth=0").inner_text() == "$0.08"
        assert not flagged(tight)
        page.fill("input[name=count]", "3")
        assert page.locator("[data-imagen-total] >> nth=0").inner_text() == "$0.12"
        assert flagged(tight)

        # Already over its budget: refused whatever the request costs, even nothing.
        page.goto(f"{live_server.url}/admin/imagen_assets/campaign/{spent.pk}/generate/")
        page.select_option("select[name=provider]", "sandbox")  # free
        page.fill("input[name=count]", "1")
        assert page.locator("[data-imagen-total] >> nth=0").inner_text() == "$0.00"
        assert flagged(spent)
