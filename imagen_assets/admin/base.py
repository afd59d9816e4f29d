"""What every imagen_assets ModelAdmin shares: its static files, a few URL helpers, and the
warnings about providers that are not answering or refused the API key."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib import messages
from django.db.models import Model
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from imagen_assets.templatetags.imagen_admin import link


class ImagenMedia:
    """The admin's stylesheet and script (live price, reload while images are being made)."""

    css = {"all": ["imagen_assets/admin.css"]}
    js = ["imagen_assets/admin.js"]


def admin_link(obj: Model | None, label: Any = None) -> str:
    """A link to ``obj``'s admin page reading ``label`` (``obj`` itself by default); a dash
    when there is no object."""
    if obj is None:
        return "—"
    opts = obj._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    return link(url, label if label is not None else obj)


def images_changelist_url(**filters: Any) -> str:
    """The generated images list, filtered by the given lookups (``campaign__id__exact=3``)."""
    query = "&".join(f"{key}={value}" for key, value in filters.items())
    url = reverse("admin:imagen_assets_generatedimage_changelist")
    return f"{url}?{query}" if query else url


def fieldset_fields(fieldsets: Sequence[tuple[Any, Any]]) -> list[str]:
    """Every field named in ``fieldsets``: read-only pages show them all read-only."""
    return [name for _title, options in fieldsets for name in options["fields"]]


def warn_about_providers(request: HttpRequest) -> None:
    """Add a message for each provider that is not answering (its breaker is open: "Wave is
    not answering since 14:02; new jobs wait until it recovers.") or whose API key was
    refused (an error): the admin user sees why images wait or fail before asking."""
    from imagen_assets import breaker

    for level, sentence in breaker.alert_texts():
        (messages.error if level == "error" else messages.warning)(request, sentence)


class ProviderAlertsMixin:
    """Lists that show :func:`warn_about_providers` above them (on GET: a POST's own
    redirect shows them on the page it lands on)."""

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        if request.method == "GET":
            warn_about_providers(request)
        response: HttpResponse = super().changelist_view(  # type: ignore[misc]
            request, extra_context
        )
        return response
