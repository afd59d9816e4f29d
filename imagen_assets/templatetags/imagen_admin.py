"""How the admin shows money, pixel sizes, statuses, thumbnails, progress and JSON.

Load with ``{% load imagen_admin %}``. Every piece that is HTML renders a small template under
``imagen_assets/admin/includes/`` (a host site may override them like any admin template), and
the ModelAdmins call the same functions for their changelist cells, so a status looks the same
in a list, on a page and in a gallery.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django import template
from django.template.loader import render_to_string
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext

from imagen_assets import files
from imagen_assets.models import GeneratedImage
from imagen_assets.money import dollars

register = template.Library()

TIMES = "\N{MULTIPLICATION SIGN}"


def render_fragment(name: str, context: dict[str, Any]) -> SafeString:
    """``imagen_assets/admin/includes/<name>`` rendered with ``context``, as safe HTML.

    The template autoescapes every value. The file's final newline is dropped so that a
    fragment sits flush against its neighbours: inline, a newline would show as a space.
    """
    html = render_to_string(f"imagen_assets/admin/includes/{name}", context)
    return mark_safe(html.strip())  # noqa: S308 (autoescaped template output, only stripped)


# -- text --------------------------------------------------------------------------------------


@register.filter
def money(value: Decimal | int | None, places: int = 2) -> str:
    """Dollars as a person reads them: two decimals, rounded half up (``$24.87``).

    ``{{ price|money:4 }}`` keeps a unit price's four places (``$0.0425``, ``$0.04``); every
    total, budget and amount left uses the default. See :func:`imagen_assets.money.dollars`.
    """
    return dollars(value, places)


@register.simple_tag
def pixel_size(width: int, height: int) -> str:
    """Width by height, as in ``1408 by 768`` written with a multiplication sign."""
    return f"{width}{TIMES}{height}"


def status_text(image: GeneratedImage, *, short: bool = False) -> str:
    """The image's status label; ``short`` for the narrow list columns."""
    if short and image.status == GeneratedImage.Status.FILTERED:
        return gettext("Withheld")
    return image.get_status_display()


def review_text(image: GeneratedImage, *, short: bool = False) -> str:
    """The image's review label; ``short`` for the narrow list columns."""
    if short and image.review_status == GeneratedImage.Review.PENDING:
        return gettext("Pending")
    return image.get_review_status_display()


def open_label(image: GeneratedImage) -> str:
    """What an image still being made is doing: queued, or generating (with its progress)."""
    if image.status == GeneratedImage.Status.QUEUED:
        return gettext("Queued")
    progress = image.task.progress
    if progress:
        return gettext("Generating %(progress)d%%") % {"progress": progress}
    return gettext("Generating")


# -- HTML --------------------------------------------------------------------------------------


@register.simple_tag
def status_badge(image: GeneratedImage, *, short: bool = False) -> SafeString:
    """The status as a coloured badge; a short one keeps the full label as its tooltip."""
    return render_fragment(
        "status_badge.html",
        {"image": image, "label": status_text(image), "text": status_text(image, short=short)},
    )


@register.simple_tag
def review_badge(image: GeneratedImage, *, short: bool = False) -> SafeString:
    """The review state as a badge (the note in its tooltip); a dash until the image is ready."""
    return render_fragment(
        "review_badge.html",
        {
            "image": image,
            "ready": image.status == GeneratedImage.Status.SUCCEEDED,
            "label": review_text(image),
            "text": review_text(image, short=short),
        },
    )


@register.simple_tag
def progress_bar(percent: int | None) -> SafeString:
    """A progress bar, its value clamped to 0..100."""
    return render_fragment("progress_bar.html", {"percent": max(0, min(100, int(percent or 0)))})


@register.simple_tag
def thumbnail_box(image: GeneratedImage, size: str = "small") -> SafeString:
    """A fixed-size box (``small``, ``medium`` or ``large``): the thumbnail, or a placeholder.

    The placeholder of an image still being made carries ``data-imagen-open``, which makes
    the page reload itself until the image is done (admin.js).
    """
    source = None
    if image.status == GeneratedImage.Status.SUCCEEDED and image.thumbnail:
        # Through the permission-checked view: the images' storage may be private.
        source = files.thumbnail_url(image)
    return render_fragment(
        "thumbnail.html",
        {
            "image": image,
            "size": size,
            "source": source,
            "label": open_label(image) if image.is_open else status_text(image, short=True),
        },
    )


@register.simple_tag
def error_preview(message: str) -> SafeString:
    """An error cut short for a list cell, in full as its tooltip."""
    return render_fragment("error_preview.html", {"message": message})


@register.simple_tag
def stacked_datetime(value: Any) -> SafeString:
    """Date over time, in the current time zone: two short lines keep a table narrow."""
    return render_fragment("stacked_datetime.html", {"value": value})


@register.simple_tag
def link(url: str, label: Any, *, new_tab: bool = False) -> SafeString:
    """A link to ``url`` reading ``label``; ``new_tab`` opens it in a new tab."""
    return render_fragment("link.html", {"url": url, "label": label, "new_tab": new_tab})


@register.simple_tag
def pretty_json(value: Any, *, hide: Sequence[str] = ()) -> SafeString:
    """``value`` as indented JSON, with any of the ``hide`` strings shown as ``<hidden>``."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    for secret in hide:
        if secret:
            text = text.replace(secret, "<hidden>")
    return render_fragment("json.html", {"text": text})
