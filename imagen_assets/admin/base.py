"""What every imagen_assets ModelAdmin shares: its static files, a few URL helpers, and the
warnings about providers that are not answering or refused the API key."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db.models import Model
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.text import capfirst
from django.utils.translation import gettext

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


# -- lists: hidden filters as chips, the result count only when filtered, a view switch ------

#: Query parameters a list reads itself (Django's own, and the images list's ``view``).
VIEW_VAR = "view"
#: The lists' template: the hidden filters' chips, "List | Grid", the favicon.
LIST_TEMPLATE = "imagen_assets/admin/change_list.html"
LOOKUP_SUFFIXES = {"exact", "iexact", "in", "isnull", "gt", "gte", "lt", "lte", "contains"}


class ImagenChangeList(ChangeList):
    """The admin's list, with two changes: ``?view=grid`` chooses how rows are shown, not a
    filter; and "N results (Show all)" shows only when something filters the list (with
    ``show_full_result_count`` off, Django shows it on every list)."""

    def get_filters_params(self, params: Any = None) -> Any:
        lookup_params = super().get_filters_params(params)
        lookup_params.pop(VIEW_VAR, None)
        return lookup_params

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        if not self.query and not self.get_filters_params():
            # Unfiltered: the count is the whole, so the search form says nothing about it.
            self.full_result_count = self.result_count


def describe_lookup(model: type[Model], key: str, values: list[str]) -> str:
    """A filter as a person reads it: ``task__id__exact=5`` is "Task #5",
    ``campaign__id__in=1,2`` is "Campaign: Spring launch, Summer"; anything else is the
    field's name and the value."""
    parts = key.split("__")
    if len(parts) > 1 and parts[-1] in LOOKUP_SUFFIXES:
        parts = parts[:-1]
    current: Any = model
    label = key
    related: Any = None
    try:
        for part in parts:
            field = current._meta.get_field(part)
            if field.is_relation and field.related_model is not None:
                related, current = field.related_model, field.related_model
                label = capfirst(field.verbose_name)
            else:
                if not (field.primary_key and related is not None):
                    related = None
                    label = capfirst(field.verbose_name)
    except FieldDoesNotExist:
        return f"{key}: {', '.join(values)}"
    shown = [value for value in values if value != ""]
    if not shown:
        return gettext("%(field)s: (empty)") % {"field": label}
    if related is not None:
        ids = [value for part in shown for value in part.split(",") if value.strip()]
        if hasattr(related, "name"):
            names = related._default_manager.filter(pk__in=ids).values_list("name", flat=True)
            try:
                return f"{label}: {', '.join(sorted(str(name) for name in names)) or '?'}"
            except (ValueError, ValidationError):
                pass
        return ", ".join(f"{label} #{value}" for value in ids)
    return f"{label}: {', '.join(shown)}"


class ListPolishMixin:
    """What the app's lists share: hidden filters (``?task__id__exact=5`` from a link) shown
    as chips with a "clear" link, the result count only when filtered, no "Delete" button on
    a page the user may only look at, and the app's favicon (the admins using it set
    ``change_list_template = LIST_TEMPLATE``)."""

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return ImagenChangeList

    def hidden_filters(self, cl: ChangeList) -> list[dict[str, str]]:
        """The filters in the address that no filter of the sidebar shows, each with the
        address of the same list without it."""
        shown: set[str] = {VIEW_VAR}
        for spec in cl.filter_specs:
            shown.update(str(name) for name in spec.expected_parameters() or () if name)
        chips = []
        for key in cl.get_filters_params():
            if key in shown:
                continue
            values = [str(value) for value in cl.filter_params.get(key, [])]
            chips.append(
                {
                    "label": describe_lookup(cl.model, key, values),
                    "clear_url": cl.get_query_string(remove=[key]),
                }
            )
        return chips

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        response: HttpResponse = super().changelist_view(  # type: ignore[misc]
            request, extra_context
        )
        context = getattr(response, "context_data", None)
        if context and "cl" in context:
            context["imagen_hidden_filters"] = self.hidden_filters(context["cl"])
        return response

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))  # type: ignore[attr-defined]
        if not self.has_change_permission(request, obj):  # type: ignore[attr-defined]
            # A page to look at has no red "Delete" in it.
            extra_context = {**(extra_context or {}), "show_delete": False}
        response: HttpResponse = super().change_view(  # type: ignore[misc]
            request, object_id, form_url, extra_context
        )
        return response
