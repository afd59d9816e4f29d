"""What every imagen_assets ModelAdmin shares: its static files and a few URL helpers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db.models import Model
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
