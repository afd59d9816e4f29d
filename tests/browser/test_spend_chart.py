"""The campaign page's spend chart in headless Chromium, at desktop and phone widths:
drawn, labelled, inside the screen, with its table alternative one click away.

Screenshots go to ``IMAGEN_SCREENSHOTS`` (default ``.run/screenshots``): spend-1360.png,
spend-390.png, spend-390-table.png.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from imagen_assets.models import Campaign, GenerationTask
from tests.browser.test_admin_flow import browser_page, shot

pytestmark = [pytest.mark.browser]

__all__ = ["browser_page"]  # the fixture, used by name


@pytest.fixture
def spent_campaign(transactional_db: None) -> Campaign:
    """Three weeks of requests by two people on two providers, some still running."""
    users = [get_user_model().objects.create_user(name) for name in ("ann", "bob")]
    campaign = Campaign.objects.create(name="Spring launch", slug="spring", budget=Decimal(50))
    today = timezone.localtime().replace(hour=10, minute=0, second=0, microsecond=0)
    tasks = []
    for day in range(21):
        for n in range(day % 4 + 1):
            provider, price = (("wave", "0.0425"), ("wavespeed", "0.04"))[n % 2]
            images = 1 + (day + n) % 4
            estimate = Decimal(price) * images
            running = day == 20 and n == 0
            tasks.append(
                GenerationTask(
                    campaign=campaign,
                    provider=provider,
                    model="m",
                    prompt="p",
                    aspect_ratio="1:1",
                    num_images=images,
                    status="processing" if running else ("failed" if day % 9 == 5 else "succeeded"),
                    estimated_cost=estimate,
                    cost=None if running else estimate * Decimal("0.9"),
                    requested_by=users[(day + n) % 2],
                    created_at=today - dt.timedelta(days=20 - day, hours=n),
                )
            )
    GenerationTask.objects.bulk_create(tasks)
    return campaign


def log_in(page: Any, live_server: Any) -> None:
    get_user_model().objects.create_superuser("marketer", "m@example.com", "spring-2026")
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "marketer")
    page.fill("#id_password", "spring-2026")
    page.click("input[type=submit]")


class SpendChartTests:
    def test_the_chart_at_desktop_and_phone_widths(
        self, live_server: Any, browser_page: Any, spent_campaign: Campaign
    ) -> None:
        page = browser_page
        missing: list[str] = []
        page.on("response", lambda r: missing.append(r.url) if r.status >= 400 else None)
        log_in(page, live_server)
        url = f"{live_server.url}/admin/imagen_assets/campaign/{spent_campaign.pk}/change/"

        for width in (1360, 390):
            page.set_viewport_size({"width": width, "height": 900})
            page.goto(url)
            chart = page.locator("svg.imagen-chart")
            chart.scroll_into_view_if_needed()
            box = chart.bounding_box()
            assert box is not None
            assert box["x"] >= 0 and box["x"] + box["width"] <= width, (width, box)
            assert box["width"] > 250
            assert page.locator("svg.imagen-chart > title").text_content()
            # 21 days: two bars each, every bar inside the chart.
            assert page.locator("rect.imagen-bar-charged").count() == 21
            right = page.evaluate(
                "Math.max(...[...document.querySelectorAll('svg.imagen-chart rect')]"
                ".map(r => r.getBoundingClientRect().right))"
            )
            assert right <= box["x"] + box["width"] + 0.5
            # The grid labels are readable: at least 11 px at any width.
            size = page.evaluate(
                "parseFloat(getComputedStyle(document.querySelector("
                "'svg.imagen-chart text')).fontSize)"
            )
            assert size >= 11
            page.locator("#spend-report").screenshot(path=str(shot_path(f"spend-{width}")))
            shot(page, f"spend-page-{width}")

        page.locator(".imagen-spend-days summary").click()
        assert page.locator("#spend-by-day tbody tr").count() == 21 - 2  # days with failures only
        page.locator("#spend-report").screenshot(path=str(shot_path("spend-390-table")))
        # Nothing the page loads is missing (the site's favicon is another helper's).
        assert not [u for u in missing if not u.endswith("/favicon.ico")], missing


def shot_path(name: str) -> Any:
    from tests.browser.test_admin_flow import SHOTS

    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS / f"{name}.png"
