"""Keyboard and phone, on every page of the studio, in headless Chromium (issue 8): each
control a person can reach has a name a screen reader says, Tab shows where the focus is,
and at 390 px the page does not scroll sideways and the list keeps the review state.

The checks run in the page (the same DOM a person's browser has): a control's name is what
the accessibility tree computes first (aria-label, aria-labelledby, its <label>, its text,
an image's alt, a title); the focus ring is the computed outline or box shadow of the
focused element after a real Tab key press.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model

from imagen_assets.models import (
    Brand,
    Campaign,
    GeneratedImage,
    GenerationRequest,
    GenerationTask,
    PromptTemplate,
    StylePreset,
)
from tests.browser.test_admin_flow import browser_page, shot  # noqa: F401 (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

#: Interactive controls a person can reach, and the first name the accessibility tree
#: would give each (empty: a screen reader says "link" or "button" and nothing else).
UNNAMED = """() => {
  const root = document.querySelector('#content') || document.body;
  const controls = root.querySelectorAll(
    'a[href], button, input:not([type=hidden]), select, textarea, summary, [tabindex]');
  const shown = (el) => {
    const box = el.getBoundingClientRect();
    const style = getComputedStyle(el);
    return box.width > 0 && box.height > 0 && style.visibility !== 'hidden';
  };
  // A label's text, or the alt of its image (Django's search bar: a magnifier, alt "Search").
  const said = (node) => (node.textContent || '').trim()
    || Array.from(node.querySelectorAll('img[alt]')).map(img => img.alt).join(' ');
  const name = (el) => {
    if (el.getAttribute('aria-label')) return el.getAttribute('aria-label');
    const by = el.getAttribute('aria-labelledby');
    const byId = (id) => (document.getElementById(id) || {}).textContent || '';
    if (by) return by.split(' ').map(byId).join(' ');
    if (el.labels && el.labels.length) return Array.from(el.labels).map(said).join(' ');
    if (['submit', 'button', 'reset'].includes(el.type) && el.value) return el.value;
    const text = (el.textContent || '').trim();
    if (text) return text;
    const img = el.querySelector('img[alt]');
    if (img && img.alt.trim()) return img.alt;
    return el.getAttribute('title') || el.getAttribute('placeholder') || '';
  };
  return Array.from(controls)
    .filter(el => shown(el) && el.tabIndex >= 0 && !name(el).trim())
    .map(el => el.outerHTML.slice(0, 160));
}"""

#: The focused element and whether it shows where the focus is.
FOCUS = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const style = getComputedStyle(el);
  const ring = (style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0)
    || style.boxShadow !== 'none';
  return {ring, html: el.outerHTML.slice(0, 120)};
}"""


@pytest.fixture
def studio(live_server: Any) -> dict[str, Any]:
    """A branded campaign with a request of ready, failed and running images."""
    get_user_model().objects.create_superuser("mia", "mia@example.com", "pw-2026")
    brand = Brand.objects.create(name="Meadow", prompt_prefix="Photograph.", banned_terms="Nike")
    StylePreset.objects.create(brand=brand, name="Studio", prompt="studio light")
    PromptTemplate(brand=brand, name="Hero", text="A {product} outdoors").save()
    campaign = Campaign.objects.create(name="Harbour lights", slug="harbour", brand=brand)
    request = GenerationRequest.objects.create(campaign=campaign, prompt="A lighthouse", count=3)
    task = GenerationTask.objects.create(
        campaign=campaign,
        request=request,
        provider="sandbox",
        model="wavespeed-ai/imagen4",
        prompt="Photograph.\n\nA lighthouse",
        written_prompt="A lighthouse",
        aspect_ratio="16:9",
        num_images=3,
        status="processing",
        provider_task_id="sb-1",
        progress=40,
    )
    images = [
        GeneratedImage.objects.create(
            task=task, campaign=campaign, index=index, status=status, alt_text="A lighthouse"
        )
        for index, status in enumerate(("processing", "failed", "processing"))
    ]
    base = live_server.url + "/admin/imagen_assets"
    return {
        "pages": {
            "campaign": f"{base}/campaign/{campaign.pk}/change/",
            "images": f"{base}/generatedimage/",
            "grid": f"{base}/generatedimage/?view=grid",
            "image": f"{base}/generatedimage/{images[1].pk}/change/",
            "generate": f"{base}/campaign/{campaign.pk}/generate/",
            "batch": f"{base}/campaign/{campaign.pk}/generate-batch/",
            "brand": f"{base}/brand/{brand.pk}/change/",
            "requests": f"{base}/generationrequest/",
        },
        "login": live_server.url + "/admin/login/",
    }


@pytest.mark.parametrize("width", [1360, 390])
def test_every_control_named_focus_visible_and_no_sideways_scroll(
    browser_page: Any,  # noqa: F811
    studio: dict[str, Any],
    width: int,
) -> None:
    page = browser_page
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(studio["login"])
    page.fill("#id_username", "mia")
    page.fill("#id_password", "pw-2026")
    page.click("input[type=submit]")

    problems: list[str] = []
    for name, url in studio["pages"].items():
        page.goto(url)
        page.wait_for_load_state("domcontentloaded")
        problems += [f"{name}: no name: {html}" for html in page.evaluate(UNNAMED)]
        # Tab from the top: every stop shows a focus ring.
        page.evaluate("document.activeElement && document.activeElement.blur()")
        for _ in range(60):
            page.keyboard.press("Tab")
            focused = page.evaluate(FOCUS)
            if focused is not None and not focused["ring"]:
                problems.append(f"{name}: focus not shown on {focused['html']}")
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        if overflow > 1:
            problems.append(f"{name}: scrolls {overflow} px sideways at {width} px")
        shot(page, f"keyboard-{name}-{width}")

    # The list keeps each row's review state in view on a phone.
    page.goto(studio["pages"]["images"])
    badge = page.locator("#result_list td.field-review_column").first
    box = badge.bounding_box()
    assert box is not None and box["x"] + box["width"] <= width, box

    assert not problems, "\n".join(problems)
