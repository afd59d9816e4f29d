"""Forms of the admin pages the app adds: generate images, review notes, campaign defaults.

They validate what can be checked without the database (choices, ranges, what the chosen
provider accepts); the services check the rest (budget) under a lock.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from imagen_assets import batches, conf, prompts, providers
from imagen_assets.imagen_sizes import ASPECT_RATIOS
from imagen_assets.models import Brand, Campaign, PromptTemplate, StylePreset
from imagen_assets.providers import get_provider, provider_aliases
from imagen_assets.services import SEED_MAX
from imagen_assets.templatetags.imagen_admin import pixel_size

if TYPE_CHECKING:
    # django-stubs makes ModelForm generic in its model; Django's own class cannot be
    # subscripted at run time.
    CampaignModelForm = forms.ModelForm[Campaign]
else:
    CampaignModelForm = forms.ModelForm


@dataclass(frozen=True)
class ProviderOption:
    """What the generate form needs to know about one usable provider."""

    alias: str
    display_name: str
    price_per_image: Decimal
    supports_negative_prompt: bool
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def aspect_ratios(self) -> tuple[str, ...]:
        return tuple(self.sizes)


def usable_providers() -> dict[str, ProviderOption]:
    """Configured providers that can be used now (no required option missing), by alias."""
    options: dict[str, ProviderOption] = {}
    for alias in provider_aliases():
        try:
            with get_provider(alias) as provider:
                if provider.missing_options():
                    continue
                options[alias] = ProviderOption(
                    alias=alias,
                    display_name=provider_display_name(alias),
                    price_per_image=provider.price_per_image,
                    supports_negative_prompt=provider.supports_negative_prompt,
                    sizes={ratio: provider.output_size(ratio) for ratio in provider.aspect_ratios},
                )
        except (ImproperlyConfigured, InvalidOperation, KeyError):
            # A broken entry is reported by the system checks; here it is just not offered.
            continue
    return options


def provider_display_name(alias: str) -> str:
    """The provider's human name, or the alias itself when it is not (or badly) configured.

    Read from the backend class, so listing many rows builds no provider objects.
    """
    return providers.provider_display_name(alias)


class ProviderSelect(forms.Select):
    """A select whose options carry each provider's price, sizes and negative-prompt support.

    The generate page's script reads these data attributes to update the estimate and the
    aspect-ratio labels as the user changes provider; the server computes the same numbers.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.providers: dict[str, ProviderOption] = {}

    def create_option(self, name: str, value: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        option = super().create_option(name, value, *args, **kwargs)
        info = self.providers.get(str(value))
        if info is not None:
            option["attrs"].update(
                {
                    "data-price": str(info.price_per_image),
                    "data-name": info.display_name,
                    "data-negative": "1" if info.supports_negative_prompt else "0",
                    "data-sizes": json.dumps(
                        {ratio: pixel_size(*size) for ratio, size in info.sizes.items()}
                    ),
                }
            )
        return option


#: The generate form's field for the template placeholder ``name`` is ``PLACEHOLDER + name``.
PLACEHOLDER = "placeholder__"


@dataclass
class PromptPreview:
    """One campaign's final prompt as the generate form would send it, or why not."""

    campaign: Campaign
    prompt: str | None = None
    error: str | None = None
    #: The form fields the error belongs to (none: the form as a whole).
    fields: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign.pk,
            "name": str(self.campaign),
            "prompt": self.prompt,
            "error": self.error,
        }


class CampaignAdminForm(CampaignModelForm):
    """The campaign form, with the default provider picked from the configured aliases."""

    default_provider = forms.ChoiceField(
        label=_("Default provider"),
        required=False,
        help_text=_("Used by “Generate images” unless another provider is chosen there."),
    )

    class Meta:
        model = Campaign
        fields = [
            "name",
            "slug",
            "brief",
            "brand",
            "brand_prompt",
            "default_provider",
            "default_aspect_ratio",
            "default_negative_prompt",
            "budget",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        usable = usable_providers()
        site_default = conf.get("DEFAULT_PROVIDER")
        choices: list[tuple[str, str]] = [
            ("", _("Site default (%(name)s)") % {"name": provider_display_name(site_default)})
        ]
        for alias in provider_aliases():
            name = provider_display_name(alias)
            label = name if name.lower() == alias.lower() else f"{name} ({alias})"
            if alias not in usable:
                label = _("%(label)s: not configured yet") % {"label": label}
            choices.append((alias, label))
        current = self.instance.default_provider if self.instance else ""
        if current and current not in dict(choices):
            # Keep a provider that was removed from settings visible instead of silently
            # replacing it when the form is saved.
            choices.append((current, _("%(alias)s (no longer configured)") % {"alias": current}))
        cast(forms.ChoiceField, self.fields["default_provider"]).choices = choices


def seed_field(help_text: Any) -> forms.IntegerField:
    """The optional seed of the generate and batch forms (0 to the providers' maximum)."""
    return forms.IntegerField(
        label=_("Seed"), required=False, min_value=0, max_value=SEED_MAX, help_text=help_text
    )


class GenerateImagesForm(forms.Form):
    """Ask for images for one or more campaigns; the price is shown before anything is spent."""

    template = forms.ModelChoiceField(
        label=_("Template"),
        queryset=PromptTemplate.objects.none(),
        required=False,
        empty_label=_("None: write the prompt"),
        help_text=_("A saved prompt of the brand; fill in its blanks below."),
    )
    prompt = forms.CharField(
        label=_("Prompt"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80, "autofocus": True}),
        help_text=_(
            "Describe the picture: subject, setting, mood, light. With a template, optional: "
            "added after it."
        ),
    )
    style = forms.ModelChoiceField(
        label=_("Style preset"),
        queryset=StylePreset.objects.none(),
        required=False,
        empty_label=_("None"),
        help_text=_("Words of the brand added after the prompt."),
    )
    count = forms.IntegerField(label=_("Number of images"))
    aspect_ratio = forms.ChoiceField(label=_("Aspect ratio"), widget=forms.RadioSelect)
    provider = forms.ChoiceField(label=_("Provider"), widget=ProviderSelect)
    seed = seed_field(
        _(
            "Optional. The same seed and prompt give similar pictures; each further task "
            "of the batch uses the next number. Left empty, a random seed is chosen and "
            "recorded with each image."
        )
    )
    negative_prompt = forms.CharField(
        label=_("Negative prompt"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 80}),
        help_text=_("What the picture must not show. Not every provider accepts one."),
    )

    def __init__(self, *args: Any, campaigns: Sequence[Campaign], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.campaigns = list(campaigns)
        self.providers = usable_providers()
        limit = int(conf.get("MAX_IMAGES_PER_REQUEST"))
        self.max_images = limit
        self.fields["count"] = forms.IntegerField(
            label=_("Number of images"),
            min_value=1,
            max_value=limit,
            initial=min(4, limit),
            widget=forms.NumberInput(attrs={"min": 1, "max": limit, "step": 1}),
            help_text=_("Per campaign, 1 to %(limit)d.") % {"limit": limit},
        )

        names = [option.display_name for option in self.providers.values()]
        provider_field = cast(forms.ChoiceField, self.fields["provider"])
        provider_field.choices = [
            (
                alias,
                option.display_name
                if names.count(option.display_name) == 1
                else f"{option.display_name} ({alias})",
            )
            for alias, option in self.providers.items()
        ]
        widget = provider_field.widget
        assert isinstance(widget, ProviderSelect)
        widget.providers = self.providers

        defaults = {campaign.default_provider for campaign in self.campaigns}
        preferred = defaults.pop() if len(defaults) == 1 else ""
        for alias in (preferred, conf.get("DEFAULT_PROVIDER")):
            if alias in self.providers:
                provider_field.initial = alias
                break
        else:
            provider_field.initial = next(iter(self.providers), None)

        ratios = {campaign.effective_aspect_ratio() for campaign in self.campaigns}
        self.fields["aspect_ratio"].initial = ratios.pop() if len(ratios) == 1 else "1:1"
        ratio_field = cast(forms.ChoiceField, self.fields["aspect_ratio"])
        ratio_field.choices = self._ratio_choices(self.selected_provider)

        negatives = {campaign.effective_negative_prompt() for campaign in self.campaigns}
        if len(negatives) == 1:
            self.fields["negative_prompt"].initial = negatives.pop()

        self._init_brand_fields()

    # -- brand kit: style presets, templates and their placeholders -------------------------

    def _init_brand_fields(self) -> None:
        """Offer the presets and templates of the selected campaigns' brand (when they share
        one), and a text field for every placeholder of those templates."""
        brand_ids = {campaign.brand_id for campaign in self.campaigns}
        brand_id = brand_ids.pop() if len(brand_ids) == 1 else None
        self.brand: Brand | None = self.campaigns[0].brand if brand_id is not None else None
        presets = StylePreset.objects.filter(brand_id=brand_id) if brand_id else None
        templates = PromptTemplate.objects.filter(brand_id=brand_id) if brand_id else None
        style_field = cast(forms.ModelChoiceField, self.fields["style"])  # type: ignore[type-arg]
        template_field = cast(
            forms.ModelChoiceField,  # type: ignore[type-arg]
            self.fields["template"],
        )
        self.presets = list(presets) if presets is not None else []
        self.templates = list(templates) if templates is not None else []
        if presets is not None:
            style_field.queryset = presets
        if templates is not None:
            template_field.queryset = templates
        # Placeholder name -> ids of the templates using it (a name shared by two templates
        # is one field, so switching between them keeps what was typed).
        self.placeholder_templates: dict[str, list[int]] = {}
        for template in self.templates:
            try:
                names = template.placeholders()
            except prompts.PromptError:
                continue
            for name in names:
                self.placeholder_templates.setdefault(name, []).append(template.pk)
        for name in self.placeholder_templates:
            self.fields[PLACEHOLDER + name] = forms.CharField(
                label=name.replace("_", " ").capitalize(),
                required=False,
                max_length=500,
                widget=forms.TextInput(attrs={"size": 40}),
            )

    @property
    def selected_template(self) -> PromptTemplate | None:
        """The template chosen in the submitted data (None: none, or not one offered)."""
        if not self.is_bound:
            return None
        chosen = self.data.get(self.add_prefix("template"))
        return next((t for t in self.templates if str(t.pk) == chosen), None)

    def placeholder_rows(self) -> list[dict[str, Any]]:
        """The placeholder fields with the templates using each, for the page to show only
        the ones of the chosen template."""
        selected = self.selected_template
        return [
            {
                "field": self[PLACEHOLDER + name],
                "templates": " ".join(str(pk) for pk in pks),
                "hidden": selected is None or selected.pk not in pks,
            }
            for name, pks in self.placeholder_templates.items()
        ]

    def _placeholder_values(self, template: PromptTemplate | None) -> dict[str, str]:
        if template is None:
            return {}
        try:
            names = template.placeholders()
        except prompts.PromptError:
            return {}
        return {
            name: self.cleaned_data.get(PLACEHOLDER + name) or ""
            for name in names
            if PLACEHOLDER + name in self.fields
        }

    def _compose_all(self) -> None:
        """Compose every selected campaign's prompt from what validated so far; an error
        goes on the field it comes from (the placeholder, the prompt) or on the form."""
        data = self.cleaned_data
        template = data.get("template")
        preset = data.get("style")
        values = self._placeholder_values(template)
        self.previews: list[PromptPreview] = []
        for campaign in self.campaigns:
            try:
                composed = prompts.compose_prompt(
                    campaign, data.get("prompt") or "", preset, template, values
                )
            except prompts.PromptError as exc:
                self.previews.append(
                    PromptPreview(campaign, error=str(exc), fields=self._error_fields(exc, values))
                )
            else:
                self.previews.append(PromptPreview(campaign, prompt=composed.final))
        seen: set[tuple[str, str]] = set()
        for preview in self.previews:
            if preview.error is None:
                continue
            message = preview.error
            if len(self.campaigns) > 1 and not self._same_for_all(preview.error):
                message = f"{preview.campaign}: {message}"
            for name in preview.fields or [None]:  # type: ignore[list-item]
                if (name or "", message) not in seen:
                    seen.add((name or "", message))
                    self.add_error(name, forms.ValidationError(message, code="prompt"))

    def _same_for_all(self, error: str) -> bool:
        return all(preview.error == error for preview in self.previews)

    def _error_fields(self, exc: prompts.PromptError, values: dict[str, str]) -> list[str]:
        """The fields where the marketer can fix ``exc``: the one holding the banned term,
        the placeholders to fill, the prompt; none when it is not in what they typed."""
        if isinstance(exc, prompts.BannedTermError):
            typed = [("prompt", self.cleaned_data.get("prompt") or "")]
            typed += [(PLACEHOLDER + name, value) for name, value in values.items()]
            return [name for name, text in typed if prompts.contains_term(text, exc.term)][:1]
        if isinstance(exc, prompts.PlaceholderError):
            return [PLACEHOLDER + name for name in exc.names if PLACEHOLDER + name in self.fields]
        if self.cleaned_data.get("template") is None:
            return ["prompt"]
        return []

    # -- what the user picked (so far) -----------------------------------------------------

    @property
    def selected_provider(self) -> ProviderOption | None:
        """The provider chosen in the submitted data, else the initial one."""
        alias = self.data.get(self.add_prefix("provider")) if self.is_bound else None
        if alias not in self.providers:
            alias = self.initial.get("provider")  # a prefill (Generate again)
        if alias not in self.providers:
            alias = self.fields["provider"].initial
        return self.providers.get(alias) if alias else None

    @property
    def selected_count(self) -> int | None:
        """The number of images asked for, when it is a valid number."""
        if not self.is_bound:
            return int(self.initial.get("count") or self.fields["count"].initial)
        try:
            count = int(self.data.get(self.add_prefix("count"), ""))
        except (TypeError, ValueError):
            return None
        return count if 1 <= count <= self.max_images else None

    def _ratio_choices(self, provider: ProviderOption | None) -> list[tuple[str, str]]:
        sizes = provider.sizes if provider else {}
        choices = []
        for ratio in ASPECT_RATIOS:
            if ratio in sizes:
                choices.append((ratio, f"{ratio} · {pixel_size(*sizes[ratio])}"))
            else:
                choices.append((ratio, ratio))
        return choices

    # -- validation ------------------------------------------------------------------------

    def clean_prompt(self) -> str:
        prompt: str = self.cleaned_data["prompt"]
        return prompt.strip()

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        # First, and whatever else is wrong: the page's live preview shows these.
        self._compose_all()
        if not self.providers:
            raise forms.ValidationError(
                _("No image provider is configured. Ask an administrator to set one up."),
                code="no_provider",
            )
        provider = self.providers.get(cleaned.get("provider", ""))
        if provider is None:
            return cleaned
        negative = (cleaned.get("negative_prompt") or "").strip()
        cleaned["negative_prompt"] = negative
        if negative and not provider.supports_negative_prompt:
            self.add_error(
                "negative_prompt",
                forms.ValidationError(
                    _("%(provider)s does not accept a negative prompt; leave it empty."),
                    code="negative_prompt_unsupported",
                    params={"provider": provider.display_name},
                ),
            )
        ratio = cleaned.get("aspect_ratio")
        if ratio and ratio not in provider.aspect_ratios:
            self.add_error(
                "aspect_ratio",
                forms.ValidationError(
                    _("%(provider)s does not offer the aspect ratio %(ratio)s."),
                    code="aspect_ratio_unsupported",
                    params={"provider": provider.display_name, "ratio": ratio},
                ),
            )
        return cleaned

    def request_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`imagen_assets.services.request_images`."""
        data = self.cleaned_data
        return {
            "prompt": data["prompt"],
            "count": data["count"],
            "aspect_ratio": data["aspect_ratio"],
            "provider": data["provider"],
            "seed": data["seed"],
            "negative_prompt": data["negative_prompt"],
            "style_preset": data.get("style"),
            "template": data.get("template"),
            "template_values": self._placeholder_values(data.get("template")) or None,
        }


class RejectForm(forms.Form):
    """The reason a rejection needs: it tells the team what to do differently next time."""

    note = forms.CharField(
        label=_("Reason"),
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text=_("Say what is wrong, e.g. “logo distorted” or “off-brand colours”."),
        error_messages={"required": _("Say why the image is rejected.")},
    )

    def clean_note(self) -> str:
        note: str = self.cleaned_data["note"]
        note = note.strip()
        if not note:
            raise forms.ValidationError(_("Say why the image is rejected."), code="required")
        return note


class ApproveForm(forms.Form):
    """An approval may carry an optional note."""

    note = forms.CharField(
        label=_("Note"), required=False, widget=forms.Textarea(attrs={"rows": 2})
    )


class GenerateBatchForm(forms.Form):
    """Ask for a batch for one campaign: prompts (typed one per line, or a CSV file) times
    aspect ratios times a count. Valid, it holds :attr:`lines`, which the admin prices
    and shows as a matrix before anything is spent."""

    #: Largest CSV accepted, in bytes.
    MAX_CSV_BYTES = 1024 * 1024

    prompts = forms.CharField(
        label=_("Prompts"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 8, "cols": 80, "autofocus": True}),
        help_text=_("One prompt per line. Or upload a CSV file below instead."),
    )
    csv_file = forms.FileField(
        label=_("CSV file"),
        required=False,
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,text/csv"}),
        # Shown as HTML (Django's help texts are): the column names are code, not words.
        help_text=_(
            "UTF-8, a header line first: <code>prompt</code>, and optionally "
            "<code>aspect_ratio</code>, <code>count</code>, <code>negative_prompt</code>, "
            "<code>alt_text</code>. A line's own aspect ratio or count replaces the ones "
            "chosen below for that line."
        ),
    )
    aspect_ratios = forms.MultipleChoiceField(
        label=_("Aspect ratios"),
        widget=forms.CheckboxSelectMultiple,
        help_text=_("Each prompt is made at each ratio checked (unless its line names one)."),
        error_messages={"required": _("Check at least one aspect ratio.")},
    )
    count = forms.IntegerField(label=_("Images per prompt and ratio"))
    provider = forms.ChoiceField(label=_("Provider"))
    seed = seed_field(
        _(
            "Optional. Each task of the batch uses the next number. Left empty, a random "
            "seed is chosen and recorded with each image."
        )
    )
    negative_prompt = forms.CharField(
        label=_("Negative prompt"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 80}),
        help_text=_("For every line that has none of its own. Not every provider accepts one."),
    )

    def __init__(self, *args: Any, campaign: Campaign, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.campaign = campaign
        self.providers = usable_providers()
        self.lines: list[Any] = []
        limit = int(conf.get("MAX_IMAGES_PER_REQUEST"))
        self.fields["count"] = forms.IntegerField(
            label=_("Images per prompt and ratio"),
            min_value=1,
            max_value=limit,
            initial=1,
            widget=forms.NumberInput(attrs={"min": 1, "max": limit, "step": 1}),
            help_text=_("1 to %(limit)d; a CSV line's count replaces it.") % {"limit": limit},
        )
        provider_field = cast(forms.ChoiceField, self.fields["provider"])
        provider_field.choices = [
            (alias, option.display_name) for alias, option in self.providers.items()
        ]
        for alias in (campaign.default_provider, conf.get("DEFAULT_PROVIDER")):
            if alias in self.providers:
                provider_field.initial = alias
                break
        else:
            provider_field.initial = next(iter(self.providers), None)
        alias = self.data.get(self.add_prefix("provider")) if self.is_bound else None
        if alias not in self.providers:
            alias = provider_field.initial
        provider = self.providers.get(alias) if alias else None
        sizes = provider.sizes if provider else {}
        ratio_field = cast(forms.MultipleChoiceField, self.fields["aspect_ratios"])
        ratio_field.choices = [
            (ratio, f"{ratio} · {pixel_size(*sizes[ratio])}" if ratio in sizes else ratio)
            for ratio in ASPECT_RATIOS
        ]
        ratio_field.initial = [campaign.effective_aspect_ratio()]
        self.fields["negative_prompt"].initial = campaign.effective_negative_prompt()

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        if not self.providers:
            raise forms.ValidationError(
                _("No image provider is configured. Ask an administrator to set one up."),
                code="no_provider",
            )
        text = (cleaned.get("prompts") or "").strip()
        upload = cleaned.get("csv_file")
        if text and upload:
            raise forms.ValidationError(
                _("Either type the prompts or upload a CSV file, not both."), code="both"
            )
        if not text and not upload:
            raise forms.ValidationError(
                _("Type at least one prompt, one per line, or upload a CSV file."),
                code="required",
            )
        try:
            if upload:
                if upload.size > self.MAX_CSV_BYTES:
                    raise batches.BatchParseError(
                        [
                            _("The CSV file is larger than %(size)d KB.")
                            % {"size": self.MAX_CSV_BYTES // 1024}
                        ]
                    )
                rows = batches.parse_csv(upload.read())
            else:
                rows = batches.parse_lines(text)
        except batches.BatchParseError as exc:
            for error in exc.errors[: batches.MAX_ERRORS]:
                self.add_error("csv_file" if upload else "prompts", error)
            more = len(exc.errors) - batches.MAX_ERRORS
            if more > 0:
                self.add_error(None, _("…and %(count)d more.") % {"count": more})
            return cleaned
        provider = self.providers.get(cleaned.get("provider", ""))
        ratios = cleaned.get("aspect_ratios") or []
        if provider is None or "count" not in cleaned:
            return cleaned
        missing = [ratio for ratio in ratios if ratio not in provider.aspect_ratios]
        if missing:
            self.add_error(
                "aspect_ratios",
                forms.ValidationError(
                    _("%(provider)s does not offer the aspect ratio %(ratio)s."),
                    code="aspect_ratio_unsupported",
                    params={"provider": provider.display_name, "ratio": ", ".join(missing)},
                ),
            )
            return cleaned
        if not ratios and any(row.aspect_ratio is None for row in rows):
            return cleaned  # "Check at least one aspect ratio." is already said
        self.lines = batches.expand(
            rows,
            aspect_ratios=ratios,
            count=cleaned["count"],
            negative_prompt=(cleaned.get("negative_prompt") or "").strip(),
        )
        return cleaned
