"""Brand kits: the brand's words, banned terms and defaults, with its style presets and
prompt templates inline; a template's own page shows every version of it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin
from django.db import models
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from imagen_assets.admin.base import ImagenMedia
from imagen_assets.models import Brand, PromptTemplate, StylePreset
from imagen_assets.prompt_text import PromptError
from imagen_assets.templatetags.imagen_admin import link

if TYPE_CHECKING:
    # django-stubs makes these generic in their model; Django's own classes cannot be
    # subscripted at run time.
    BrandModelAdmin = admin.ModelAdmin[Brand]
    TemplateModelAdmin = admin.ModelAdmin[PromptTemplate]
    PresetInline = admin.StackedInline[StylePreset, Brand]
    TemplateInline = admin.StackedInline[PromptTemplate, Brand]
else:
    BrandModelAdmin = TemplateModelAdmin = admin.ModelAdmin
    PresetInline = admin.StackedInline
    TemplateInline = admin.StackedInline


def placeholder_list(template: PromptTemplate) -> str:
    try:
        names = template.placeholders()
    except PromptError as exc:
        return str(exc)
    return ", ".join(f"{{{name}}}" for name in names) or str(_("none"))


#: Text boxes sized to what they hold (the admin's default is ten rows).
SHORT_TEXT: Mapping[type[models.Field[Any, Any]], Mapping[str, Any]] = {
    models.TextField: {"widget": forms.Textarea(attrs={"rows": 3, "cols": 60})}
}

TWO_ROWS: Mapping[type[models.Field[Any, Any]], Mapping[str, Any]] = {
    models.TextField: {"widget": forms.Textarea(attrs={"rows": 2, "cols": 60})}
}


class StylePresetInline(PresetInline):
    """Stacked, not tabular: a table of text boxes does not fit a phone."""

    model = StylePreset
    extra = 1
    fields = ["name", "prompt", "position"]
    formfield_overrides = TWO_ROWS
    verbose_name = _("style preset")
    verbose_name_plural = _("style presets: words a marketer can add by picking a name")


class PromptTemplateInline(TemplateInline):
    model = PromptTemplate
    extra = 1
    fields = ["name", "text", "version_info"]
    readonly_fields = ["version_info"]
    formfield_overrides = SHORT_TEXT
    verbose_name = _("prompt template")
    verbose_name_plural = _("prompt templates: saved prompts with {placeholders}")

    @admin.display(description=_("version"))
    def version_info(self, obj: PromptTemplate) -> str:
        if obj.pk is None:
            return "—"
        url = reverse("admin:imagen_assets_prompttemplate_change", args=[obj.pk])
        return link(url, _("Version %(number)d: history") % {"number": obj.version})


class BrandAdmin(BrandModelAdmin):
    """A brand kit a marketer fills in once and every campaign of the brand uses."""

    list_display = ["name", "campaign_count", "preset_count", "template_count", "updated_at"]
    search_fields = ["name"]
    inlines = [StylePresetInline, PromptTemplateInline]
    formfield_overrides = SHORT_TEXT
    Media = ImagenMedia
    fieldsets = [
        (None, {"fields": ["name"]}),
        (
            _("Words around every prompt"),
            {
                "fields": ["prompt_prefix", "prompt_suffix"],
                "description": _(
                    "The final prompt is: prefix, the marketer's prompt, the style preset, "
                    "the campaign's own words, suffix."
                ),
            },
        ),
        (_("Refused before anything is spent"), {"fields": ["banned_terms"]}),
        (
            _("Defaults for new images"),
            {
                "fields": ["default_aspect_ratio", "default_negative_prompt"],
                "description": _("A campaign's own defaults, where set, override these."),
            },
        ),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Brand]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                n_campaigns=Count("campaigns", distinct=True),
                n_presets=Count("presets", distinct=True),
                n_templates=Count("templates", distinct=True),
            )
        )

    @admin.display(description=_("campaigns"), ordering="n_campaigns")
    def campaign_count(self, obj: Any) -> int:
        return int(obj.n_campaigns)

    @admin.display(description=_("style presets"), ordering="n_presets")
    def preset_count(self, obj: Any) -> int:
        return int(obj.n_presets)

    @admin.display(description=_("templates"), ordering="n_templates")
    def template_count(self, obj: Any) -> int:
        return int(obj.n_templates)

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        if formset.model is not PromptTemplate:
            super().save_formset(request, form, formset, change)
            return
        # Templates keep a version per change, with who made it.
        instances = formset.save(commit=False)
        for deleted in formset.deleted_objects:
            deleted.delete()
        for template in instances:
            template.save(changed_by=request.user)


class PromptTemplateAdmin(TemplateModelAdmin):
    """One template: its text, its placeholders and every earlier version."""

    list_display = ["name", "brand", "version", "updated_by", "updated_at"]
    list_filter = ["brand"]
    list_select_related = ["brand", "updated_by"]
    search_fields = ["name", "text"]
    fields = ["brand", "name", "text", "placeholders_info", "history"]
    readonly_fields = ["placeholders_info", "history"]
    formfield_overrides = SHORT_TEXT
    Media = ImagenMedia

    @admin.display(description=_("placeholders"))
    def placeholders_info(self, obj: PromptTemplate) -> str:
        return placeholder_list(obj) if obj.pk else "—"

    @admin.display(description=_("history"))
    def history(self, obj: PromptTemplate) -> SafeString | str:
        if obj.pk is None:
            return "—"
        versions = obj.versions.select_related("changed_by").order_by("-number")
        return render_to_string(
            "imagen_assets/admin/includes/template_history.html",
            {"versions": versions, "current": obj.version},
        )

    def save_model(
        self, request: HttpRequest, obj: PromptTemplate, form: Any, change: bool
    ) -> None:
        obj.save(changed_by=request.user)
