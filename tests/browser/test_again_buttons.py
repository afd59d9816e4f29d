"""The image page's "Generate again" and "Cancel" buttons in headless Chromium, on a
desktop (1360 px) and a phone (390 px): visible, inside the page, reachable, and leading to
the prefilled generate form and the cancel confirmation."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model

from imagen_assets.models import Campaign, GeneratedImage, GenerationRequest, GenerationTask
from tests.browser.test_admin_flow import browser_page, shot  # noqa: F401 (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def made(campaign: Campaign, status: str, task_status: str, **task: Any) -> GeneratedImage:
    request = GenerationRequest.objects.create(
        campaign=campaign, prompt="A lighthouse at dusk, long exposure", count=2
    )
    values: dict[str, Any] = {
        "provider": "sandbox",
        "model": "wavespeed-ai/imagen4",
        "prompt": "A lighthouse at dusk, long exposure",
        "aspect_ratio": "16:9",
        "num_images": 2,
        "seed": 4242,
        "status": task_status,
        "request": request,
        **task,
    }
    row = GenerationTask.objects.create(campaign=campaign, **values)
    GeneratedImage.objects.create(task=row, campaign=campaign, index=1, status=status)
    return GeneratedImage.objects.create(
        task=row,
        campaign=campaign,
        index=0,
        status=status,
        error_message="The provider refused the prompt." if status == "failed" else "",
    )


@pytest.mark.parametrize("width", [1360, 390])
def test_again_and_cancel_buttons(browser_page: Any, live_server: Any, width: int) -> None:  # noqa: F811
    page = browser_page
    page.set_viewport_size({"width": width, "height": 900})
    get_user_model().objects.create_superuser("mia", "mia@example.com", "pw-2026")
    campaign = Campaign.objects.create(name="Harbour lights", slug="harbour")
    failed = made(campaign, "failed", "failed")
    running = made(campaign, "processing", "processing", provider_task_id="sb-1", progress=40)

    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "mia")
    page.fill("#id_password", "pw-2026")
    page.click("input[type=submit]")

    page.goto(f"{live_server.url}/admin/imagen_assets/generatedimage/{failed.pk}/change/")
    retry = page.get_by_role("link", name="Retry", exact=True)
    more = page.get_by_role("link", name="More like this")
    for link in (retry, more):
        box = link.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
    shot(page, f"again-failed-{width}")

    page.goto(f"{live_server.url}/admin/imagen_assets/generatedimage/{running.pk}/change/")
    cancel = page.get_by_role("link", name="Cancel this image")
    task = page.get_by_role("link", name="Cancel its task (2 images)")
    cancel.focus()
    assert page.evaluate("document.activeElement.textContent").strip() == "Cancel this image"
    box = task.bounding_box()
    assert box is not None and box["x"] + box["width"] <= width
    shot(page, f"again-running-{width}")

    task.click()
    page.wait_for_selector("text=Yes, cancel 2 images")
    shot(page, f"cancel-confirm-{width}")

    page.goto(f"{live_server.url}/admin/imagen_assets/generatedimage/{failed.pk}/change/")
    page.get_by_role("link", name="Retry", exact=True).click()
    page.wait_for_selector("text=Carried over from")
    assert page.input_value("#id_seed") == "4242"
    assert page.input_value("#id_prompt") == "A lighthouse at dusk, long exposure"
    shot(page, f"again-generate-{width}")
