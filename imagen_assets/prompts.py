"""The final prompt of a request: a template filled in (or the marketer's words), a style
preset, the campaign's and its brand's words (:meth:`Campaign.build_prompt`, the one place
they are put together), checked against the brand's banned terms.

The generate form, its live preview, :func:`imagen_assets.services.request_images` (so the
command line too) and batches all call :func:`compose_prompt`, so what the form shows is
what is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from django.utils.translation import gettext as _

from imagen_assets.models import Campaign, PromptTemplate, PromptTemplateVersion, StylePreset
from imagen_assets.prompt_text import (
    BannedTermError,
    PlaceholderError,
    PromptError,
    contains_term,
    fill,
    find_banned_term,
)

__all__ = [
    "BannedTermError",
    "ComposedPrompt",
    "PlaceholderError",
    "PromptError",
    "compose_prompt",
    "contains_term",
]


@dataclass(frozen=True)
class ComposedPrompt:
    """What :func:`compose_prompt` made, and from what."""

    #: The marketer's part: the filled template (then any words written with it), or the
    #: words written. Recorded as the request's prompt.
    written: str
    #: What is sent to the provider.
    final: str
    preset: StylePreset | None = None
    template: PromptTemplate | None = None
    #: The template's version that was filled (its newest), recorded on the request.
    template_version: PromptTemplateVersion | None = None
    values: dict[str, str] = field(default_factory=dict)


def _check_same_brand(campaign: Campaign, item: StylePreset | PromptTemplate) -> None:
    if item.brand_id != campaign.brand_id:
        raise PromptError(
            _("“%(item)s” belongs to another brand than %(campaign)s's.")
            % {"item": item, "campaign": campaign}
        )


def compose_prompt(
    campaign: Campaign,
    prompt: str = "",
    preset: StylePreset | None = None,
    template: PromptTemplate | None = None,
    values: Mapping[str, str] | None = None,
) -> ComposedPrompt:
    """The prompt sent for ``campaign``.

    With ``template``, its placeholders are filled from ``values`` (each required, none
    unknown) and ``prompt`` (optional) is added after it; without, ``prompt`` is required and
    ``values`` must be empty. The preset's words, the campaign's and the brand's are added by
    :meth:`Campaign.build_prompt`. Raises :class:`PlaceholderError`, :class:`BannedTermError`
    (naming the term) or :class:`PromptError`, with a message for the marketer.
    """
    values = {str(name): str(value) for name, value in (values or {}).items()}
    prompt = (prompt or "").strip()
    version = None
    if preset is not None:
        _check_same_brand(campaign, preset)
    if template is not None:
        _check_same_brand(campaign, template)
        filled = fill(template.text, values)
        written = "\n\n".join(part for part in (filled, prompt) if part)
        version = template.current_version()
    else:
        if values:
            raise PlaceholderError(
                _("Values were given for %(names)s, but no template was chosen.")
                % {"names": ", ".join(f"{{{name}}}" for name in values)},
                values,
            )
        written = prompt
    if not written:
        raise PromptError(_("Write a prompt."))
    final = campaign.build_prompt(written, preset.prompt if preset else "")
    brand = campaign.brand
    if brand is not None:
        term = find_banned_term(final, brand.banned_term_list())
        if term is not None:
            raise BannedTermError(
                _(
                    "“%(term)s” is a banned term of the brand %(brand)s: take it out of the "
                    "prompt. Nothing is queued or spent while it is there."
                )
                % {"term": term, "brand": brand},
                term,
            )
    return ComposedPrompt(
        written=written,
        final=final,
        preset=preset,
        template=template,
        template_version=version,
        values=values,
    )
