"""The review screen as two reviewers use it, with the keyboard, in headless Chromium:
a campaign asking for two approvals, so an image is approved only after the second."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.files.base import ContentFile
from django.urls import include, path
from django.views.static import serve
from PIL import Image, ImageDraw

from imagen_assets.models import Campaign, GeneratedImage, GenerationTask
from tests.browser.test_admin_flow import browser_page  # noqa: F401 (the shared fixture)

pytestmark = [pytest.mark.integration, pytest.mark.browser]

REVIEWER_PERMS = ("approve_generatedimage", "reject_generatedimage", "view_generatedimage")
COLOURS = ["#e07a5f", "#3d405b", "#81b29a", "#f2cc8f", "#6d597a"]

# The live server serves static files only; the cards need the media too (the example
# site serves them only with DEBUG on).
urlpatterns = [
    path("media/<path:path>", serve, {"document_root": None}, name="test-media"),
    path("", include("campaigns.urls")),
]


@pytest.fixture
def media_served(settings: Any, tmp_path: Path) -> Path:
    media = tmp_path / "media"
    media.mkdir()
    settings.MEDIA_ROOT = str(media)
    urlpatterns[0].default_args["document_root"] = str(media)
    settings.ROOT_URLCONF = __name__
    return media


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where screenshots go: ``IMAGEN_SCREENSHOTS`` if set (to look at them), else tmp."""
    folder = Path(os.environ.get("IMAGEN_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def picture(colour: str, label: str) -> bytes:
    image = Image.new("RGB", (1024, 1024), colour)
    draw = ImageDraw.Draw(image)
    draw.ellipse((262, 262, 762, 762), fill="#f4f1de")
    draw.text((40, 40), label, fill="black")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def ready_images(campaign: Campaign, count: int, prompt: str, start: int) -> list[GeneratedImage]:
    task = GenerationTask.objects.create(
        campaign=campaign,
        provider="sandbox",
        model="wavespeed-ai/imagen4",
        prompt=prompt,
        aspect_ratio="1:1",
        num_images=count,
        status="succeeded",
    )
    images = []
    for index in range(count):
        image = GeneratedImage(task=task, campaign=campaign, index=index, status="succeeded")
        data = picture(COLOURS[(start + index) % len(COLOURS)], f"variant {index + 1}")
        image.file.save(f"review-{task.pk}-{index}.jpg", ContentFile(data), save=False)
        thumb = Image.open(io.BytesIO(data))
        thumb.thumbnail((400, 400))
        buffer = io.BytesIO()
        thumb.save(buffer, "JPEG")
        image.thumbnail.save(f"thumb-{task.pk}-{index}.jpg", ContentFile(buffer.getvalue()))
        images.append(image)
    return images


def reviewer(username: str) -> Any:
    user = get_user_model().objects.create_user(username, password="spring-2026", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="imagen_assets", codename__in=REVIEWER_PERMS
        )
    )
    return user


def log_in(page: Any, url: str, username: str) -> None:
    page.context.clear_cookies()
    page.goto(f"{url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", "spring-2026")
    page.click("input[type=submit]")
    page.wait_for_selector("#content-main")


def wait_for_focus(page: Any, image: GeneratedImage) -> None:
    """Wait until review.js has put the keyboard focus on ``image``'s card."""
    page.wait_for_function(
        f"document.activeElement && document.activeElement.id === 'image-{image.pk}'"
    )


def shot(page: Any, folder: Path, name: str, width: int) -> Path:
    page.set_viewport_size({"width": width, "height": 900})
    target = folder / f"{name}-{width}.png"
    page.screenshot(path=str(target), full_page=True)
    return target


class TwoReviewersKeyboardTests:
    def test_approved_only_after_the_second_reviewer(
        self,
        transactional_db: None,
        media_served: Path,
        live_server: Any,
        browser_page: Any,  # noqa: F811
        shots: Path,
    ) -> None:
        campaign = Campaign.objects.create(
            name="Spring launch", slug="spring-launch", required_approvals=2
        )
        bikes = ready_images(campaign, 3, "A red bicycle by the sea, pastel palette", 0)
        picnic = ready_images(campaign, 2, "A picnic on a hill of spring flowers", 3)
        reviewer("rita")
        reviewer("otto")
        page = browser_page

        # Rita: from the index's count to the screen; the first image has the focus.
        log_in(page, live_server.url, "rita")
        page.set_viewport_size({"width": 1366, "height": 900})
        page.click("text=5 images wait for your review")
        wait_for_focus(page, bikes[0])
        assert page.locator(".imagen-request").count() == 2
        assert page.locator("[data-imagen-variant]").count() == 5
        shot(page, shots, "1-review-screen", 1366)
        shot(page, shots, "1-review-screen", 390)
        page.set_viewport_size({"width": 1366, "height": 900})

        # ? shows the shortcuts.
        page.keyboard.press("?")
        assert page.locator("#imagen-shortcuts").is_visible()
        shot(page, shots, "2-shortcuts", 1366)
        page.keyboard.press("Escape")
        assert not page.locator("#imagen-shortcuts").is_visible()

        # a approves the focused image: one of two approvals.
        with page.expect_navigation():
            page.keyboard.press("a")
        assert "Your approval of image" in page.locator(".messagelist").inner_text()
        assert "1 of 2" in page.locator(".messagelist").inner_text()
        bikes[0].refresh_from_db()
        assert bikes[0].review_status == "pending"
        assert page.locator("[data-imagen-variant]").count() == 4

        # Back on the same request: j moves to its next image, r asks for the reason.
        assert page.evaluate("location.hash") == f"#request-{bikes[0].task_id}"
        wait_for_focus(page, bikes[1])
        page.keyboard.press("j")
        assert page.evaluate("document.activeElement.id") == f"image-{bikes[2].pk}"
        page.keyboard.press("r")
        assert page.evaluate("document.activeElement.name") == "note"
        page.keyboard.type("Horizon tilted")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        bikes[2].refresh_from_db()
        assert (bikes[2].review_status, bikes[2].review_note) == ("rejected", "Horizon tilted")
        shot(page, shots, "3-after-rita", 1366)

        # Otto: sees Rita's approval on the card; his approval decides the image.
        log_in(page, live_server.url, "otto")
        page.goto(f"{live_server.url}/admin/imagen_assets/generatedimage/review/")
        page.wait_for_selector("[data-imagen-variant].imagen-current")
        first = page.locator(f"#image-{bikes[0].pk}")
        assert "1 of 2 approvals" in first.inner_text()
        wait_for_focus(page, bikes[0])
        with page.expect_navigation():
            page.keyboard.press("a")
        assert f"Image #{bikes[0].pk} approved." in page.locator(".messagelist").inner_text()
        bikes[0].refresh_from_db()
        assert bikes[0].review_status == "approved"
        assert bikes[0].reviewed_by.username == "otto"

        # p keeps the focused picnic variant and rejects the other, in one go.
        page.locator(f"#image-{picnic[1].pk}").focus()
        with page.expect_navigation():
            page.keyboard.press("p")
        statuses = [GeneratedImage.objects.get(pk=image.pk).review_status for image in picnic]
        assert statuses == ["rejected", "pending"]  # kept: one approval of two
        shot(page, shots, "4-after-otto", 1366)
        shot(page, shots, "4-after-otto", 390)

        # The campaign and image pages as a superuser sees them: review panel, timeline.
        get_user_model().objects.create_superuser("lead", "l@example.com", "spring-2026")
        log_in(page, live_server.url, "lead")
        page.goto(f"{live_server.url}/admin/imagen_assets/campaign/{campaign.pk}/change/")
        assert "Timeline" in page.locator("#timeline").inner_text()
        shot(page, shots, "5-campaign", 1366)
        page.goto(f"{live_server.url}/admin/imagen_assets/generatedimage/{bikes[0].pk}/change/")
        assert "2 of 2 approvals" in page.locator(".imagen-round").inner_text()
        shot(page, shots, "6-image", 1366)
        shot(page, shots, "6-image", 390)
