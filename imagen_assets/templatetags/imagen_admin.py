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
from django.template.defaultfilters import filesizeformat
from django.template.loader import render_to_string
from django.utils.formats import date_format
from django.utils.safestring import SafeString, mark_safe
from django.utils.timezone import is_aware, localtime
from django.utils.translation import gettext

from imagen_assets import files
from imagen_assets.models import GeneratedImage, GenerationTask
from imagen_assets.money import dollars
from imagen_assets.money import unit_price as money_unit_price

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
def money(value: Decimal | int | None) -> str:
    """Dollars as a person reads them, with two decimals: ``$1.20``, ``$24.87``; the one
    way the app shows an amount (:func:`imagen_assets.money.dollars`). The generate page's
    script formats its live estimate the same way (admin.js)."""
    return dollars(value)


@register.filter
def unit_price(value: Decimal | int | None) -> str:
    """A price per image: ``4.25¢`` for $0.0425, ``$0.04`` when it is whole cents
    (:func:`imagen_assets.money.unit_price`)."""
    return money_unit_price(value)


@register.filter
def when(value: Any) -> str:
    """A date and time, the one format of the app's pages (the locale's ``DATETIME_FORMAT``
    in the current time zone): "Nov. 21, 2026, 9:22 a.m."."""
    if value is None:
        return "—"
    return date_format(localtime(value) if is_aware(value) else value, "DATETIME_FORMAT")


@register.filter
def file_size(value: int | None) -> str:
    """Bytes as people read them ("1.2 MB"), a dash when unknown."""
    if value is None:
        return "—"
    return str(filesizeformat(value))


@register.simple_tag
def pixel_size(width: int, height: int) -> str:
    """Width by height, as in ``1408 by 768`` written with a multiplication sign."""
    return f"{width}{TIMES}{height}"


def is_storing(image: GeneratedImage) -> bool:
    """The provider finished (its task succeeded) but this image's file is not stored yet:
    "Storing", never "Generating 100%" (progress is the task's, not the image's)."""
    return image.is_open and image.task.status == GenerationTask.Status.SUCCEEDED


def image_progress(image: GeneratedImage) -> int | None:
    """The progress bar's percent while the provider is generating the image; None when
    no bar is true: queued, storing, or ended."""
    if image.status != GeneratedImage.Status.PROCESSING or is_storing(image):
        return None
    return image.task.progress


def status_text(image: GeneratedImage, *, short: bool = False) -> str:
    """The image's status label; ``short`` for the narrow list columns."""
    if is_storing(image):
        return gettext("Storing")
    if short and image.status == GeneratedImage.Status.FILTERED:
        return gettext("Withheld")
    return image.get_status_display()


def review_text(image: GeneratedImage, *, short: bool = False) -> str:
    """The image's review label; ``short`` for the narrow list columns."""
    if short and image.review_status == GeneratedImage.Review.PENDING:
        return gettext("Pending")
    return image.get_review_status_display()


def open_label(image: GeneratedImage) -> str:
    """What an image still being made is doing: queued, generating (with the task's
    progress) or storing (the provider is done, the file is not stored yet)."""
    if is_storing(image):
        return gettext("Storing")
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
def image_progress_bar(image: GeneratedImage) -> SafeString:
    """The progress bar of an image the provider is generating; nothing otherwise."""
    percent = image_progress(image)
    return progress_bar(percent) if percent is not None else mark_safe("")


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


# -- the admin index ---------------------------------------------------------------------------

#: The models for finding out what happened (not for everyday work), by app label.
SUPPORT_MODELS = {
    "imagen_assets": {"GenerationTask", "WebhookEvent", "ProviderHealth"},
    "django_rq": {"Dashboard"},  # its queues and workers
}


@register.filter
def support_group(app_list: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The admin's ``app_list`` with the app's support models (tasks, webhook events,
    providers' health, and django-rq's queues) in a "Support" group of their own, right after
    the app's everyday models: ``{% include "admin/app_list.html" with
    app_list=app_list|support_group %}``. Other apps are left as they are."""
    result: list[dict[str, Any]] = []
    support: list[dict[str, Any]] = []
    anchor = None
    for app in app_list:
        names = SUPPORT_MODELS.get(app["app_label"], set())
        kept = [model for model in app["models"] if model["object_name"] not in names]
        support += [
            # django-rq's one entry is its queues' dashboard: say so.
            {**model, "name": gettext("Queues")} if app["app_label"] == "django_rq" else model
            for model in app["models"]
            if model["object_name"] in names
        ]
        if kept:
            result.append({**app, "models": kept})
        if app["app_label"] == "imagen_assets":
            anchor = len(result)
    if not support:
        return app_list
    group = {
        "name": gettext("Support"),
        "app_label": "imagen_assets_support",
        "app_url": next(
            (app["app_url"] for app in app_list if app["app_label"] == "imagen_assets"), ""
        ),
        "has_module_perms": True,
        "models": support,
    }
    result.insert(len(result) if anchor is None else anchor, group)
    return result
