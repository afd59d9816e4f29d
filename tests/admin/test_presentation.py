"""The imagen_admin template library: exact output, the same from Python and from a template."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.template import Context, Template

from imagen_assets.models import Campaign, GeneratedImage, GenerationTask
from imagen_assets.templatetags.imagen_admin import (
    error_preview,
    link,
    money,
    pixel_size,
    pretty_json,
    progress_bar,
    review_badge,
    status_badge,
    thumbnail_box,
)


def render(source: str, **context: object) -> str:
    return Template("{% load imagen_admin %}" + source).render(Context(context))


def image(status: str = "succeeded", progress: int = 0, **fields: object) -> GeneratedImage:
    """An unsaved image: the presentation reads rows, it never queries."""
    campaign = Campaign(name="Spring", slug="spring")
    task = GenerationTask(campaign=campaign, progress=progress)
    if status == "succeeded":
        fields.setdefault("review_status", "pending")
    return GeneratedImage(campaign=campaign, task=task, status=status, **fields)


class MoneyTests:
    @pytest.mark.parametrize(
        ("value", "shown"),
        [
            (Decimal("0.0425"), "$0.04"),
            (Decimal("24.8725"), "$24.87"),
            (Decimal("0.125"), "$0.13"),  # half up, to the cent
            (Decimal("1.2"), "$1.20"),
            (3, "$3.00"),
            (Decimal("0.0001"), "<$0.01"),  # not zero, so not "$0.00"
            (Decimal("0"), "$0.00"),
            (Decimal("-1.5"), "-$1.50"),
            (Decimal("1234567.891"), "$1,234,567.89"),
            (None, "—"),
        ],
    )
    def test_format(self, value: Decimal | int | None, shown: str) -> None:
        assert money(value) == shown

    def test_is_a_filter(self) -> None:
        assert render("{{ v|money }}", v=Decimal("0.1649")) == "$0.16"
        assert render("{{ v|unit_price }}", v=Decimal("0.0425")) == "4.25\N{CENT SIGN}"


class PixelSizeTests:
    def test_uses_the_multiplication_sign(self) -> None:
        assert pixel_size(1408, 768) == "1408\N{MULTIPLICATION SIGN}768"
        assert render("{% pixel_size 3 2 %}") == "3\N{MULTIPLICATION SIGN}2"


class BadgeTests:
    def test_status_badge_short_keeps_the_full_label_as_tooltip(self) -> None:
        withheld = image("filtered")
        assert status_badge(withheld, short=True) == (
            '<span class="imagen-badge imagen-status-filtered" '
            'title="Withheld by provider">Withheld</span>'
        )
        assert status_badge(withheld) == (
            '<span class="imagen-badge imagen-status-filtered" '
            'title="Withheld by provider">Withheld by provider</span>'
        )

    def test_review_badge_shows_the_note_escaped_in_its_tooltip(self) -> None:
        reviewed = image(review_status="rejected", review_note='Logo "bent" <here>')
        assert review_badge(reviewed) == (
            '<span class="imagen-badge imagen-review-rejected" '
            'title="Rejected: Logo &quot;bent&quot; &lt;here&gt;">Rejected</span>'
        )

    def test_review_badge_is_a_dash_until_the_image_is_ready(self) -> None:
        assert review_badge(image("processing")) == '<span class="imagen-quiet">—</span>'

    def test_short_pending_review(self) -> None:
        assert review_badge(image(), short=True).endswith('title="Pending review">Pending</span>')

    def test_the_tag_renders_what_the_function_returns(self) -> None:
        ready = image()
        assert render("{% status_badge i short=True %}", i=ready) == status_badge(ready, short=True)


class ProgressBarTests:
    @pytest.mark.parametrize(("value", "shown"), [(45, 45), (150, 100), (-3, 0), (None, 0)])
    def test_is_clamped(self, value: int | None, shown: int) -> None:
        assert progress_bar(value) == (
            '<span class="imagen-progress" role="progressbar" aria-valuemin="0" '
            f'aria-valuemax="100" aria-valuenow="{shown}"><span style="width: {shown}%">'
            "</span></span>"
        )


class ThumbnailBoxTests:
    def test_an_open_image_is_a_spinner_that_keeps_the_page_reloading(self) -> None:
        assert thumbnail_box(image("processing", progress=45), "medium") == (
            '<span class="imagen-thumb imagen-thumb-medium imagen-thumb-pending" '
            'data-imagen-open="1"><span class="imagen-spinner" aria-hidden="true"></span>'
            '<span class="imagen-thumb-text">Generating 45%</span></span>'
        )

    def test_a_queued_image_says_so(self) -> None:
        assert ">Queued</span>" in thumbnail_box(image("queued"))

    def test_an_image_without_a_file_shows_its_status(self) -> None:
        assert thumbnail_box(image("filtered")) == (
            '<span class="imagen-thumb imagen-thumb-small imagen-thumb-empty">'
            '<span class="imagen-badge imagen-status-filtered">Withheld</span></span>'
        )


class TextTests:
    def test_error_preview_cuts_at_70_characters_and_keeps_the_whole_as_tooltip(self) -> None:
        message = "Wave: HTTP 400 " + "x" * 100
        html = error_preview(message)
        assert html.startswith(f'<span class="imagen-error" title="{message}">')
        assert html.endswith(message[:69] + "…</span>")

    def test_link(self) -> None:
        assert link("/a?b=1&c=2", "<A>") == '<a href="/a?b=1&amp;c=2">&lt;A&gt;</a>'
        assert link("/f.png", "f.png", new_tab=True) == (
            '<a href="/f.png" target="_blank" rel="noopener">f.png</a>'
        )

    def test_pretty_json_is_sorted_escaped_and_hides_secrets(self) -> None:
        html = pretty_json({"b": "<token-1>", "a": 1}, hide=["token-1", ""])
        assert (
            '<pre class="imagen-json" tabindex="0">{\n  &quot;a&quot;: 1,\n'
            "  &quot;b&quot;: &quot;&lt;&lt;hidden&gt;&gt;&quot;\n}</pre>"
        ) in html
