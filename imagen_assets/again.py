"""Generate again: what "Retry", "More like this" and "Same seed elsewhere" carry over.

From any image (ready, failed, withheld, cancelled) :func:`prefill` works out the request
to make again: the values that prefill the generate form (its ``initial``), what is
carried over in words the form shows, and the origin recorded on the new
:class:`~imagen_assets.models.GenerationRequest` (with the image as its source). The admin
and ``imagen_generate --again`` both start here; nothing is spent until the request is
made through :func:`imagen_assets.services.request_images` as usual (budget, closed
campaign and the rest checked there).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext as _

from imagen_assets import breaker
from imagen_assets.models import GeneratedImage, GenerationRequest, StylePreset
from imagen_assets.providers import get_provider
from imagen_assets.status import TaskStatus

Origin = GenerationRequest.Origin

#: The ``mode`` words of the generate page's query string and of the command line.
MODES: dict[str, Origin] = {
    "retry": Origin.RETRY,
    "more": Origin.MORE_LIKE_THIS,
    "other": Origin.OTHER_PROVIDER,
}


class AgainError(ValueError):
    """This image cannot be made again this way; the message says why."""


@dataclass(frozen=True)
class Prefill:
    """A request to make again: ``initial`` for the generate form (its field names),
    ``carried`` as (label, value) pairs to show, ``notes`` worth knowing first."""

    image: GeneratedImage
    mode: str
    origin: Origin
    initial: dict[str, Any]
    carried: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: The brand's style preset the image was made with (its words are added again).
    style_preset: StylePreset | None = None

    def request_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``services.request_images`` making this request as is."""
        return {
            "campaign": self.image.campaign,
            "prompt": self.initial["prompt"],
            "count": self.initial["count"],
            "aspect_ratio": self.initial["aspect_ratio"],
            "provider": self.initial["provider"],
            "seed": self.initial["seed"],
            "negative_prompt": self.initial["negative_prompt"],
            "origin": self.origin,
            "source_image": self.image,
            "style_preset": self.style_preset,
        }


def prefill(
    image: GeneratedImage,
    mode: str,
    *,
    provider: str | None = None,
    usable: Mapping[str, Any] | None = None,
) -> Prefill:
    """What ``mode`` (``retry``, ``more``, ``other``) carries over from ``image``.

    ``provider`` is the alias for ``other`` (default: the first of ``usable``, the
    providers that can be used now by alias, that is not the image's). Raises
    :class:`AgainError`.
    """
    if mode not in MODES:
        raise AgainError(
            _("Unknown way to generate again: %(mode)s (use retry, more or other).")
            % {"mode": mode}
        )
    task = image.task
    prompt = image.task.prompt_as_written(image.campaign)
    whole_task = task.status in (TaskStatus.FAILED, TaskStatus.CANCELLED)
    count = task.num_images if whole_task and mode != "more" else 1
    initial: dict[str, Any] = {
        "prompt": prompt,
        "count": count,
        "aspect_ratio": task.aspect_ratio,
        "provider": task.provider,
        "seed": task.seed,
        "negative_prompt": task.negative_prompt,
    }
    carried = [
        (_("Prompt"), prompt),
        (_("Aspect ratio"), task.aspect_ratio),
    ]
    request = task.request
    preset = request.style_preset if request is not None else None
    if preset is not None and preset.brand_id != image.campaign.brand_id:
        preset = None  # the campaign has another brand now: its presets only
    if preset is not None:
        initial["style"] = preset.pk
        carried.append((_("Style preset"), preset.name))
    if task.negative_prompt:
        carried.append((_("Negative prompt"), task.negative_prompt))
    notes: list[str] = []
    name = breaker.display_name(task.provider)
    if mode == "more":
        initial["seed"] = None
        initial["count"] = task.num_images
        carried.append((_("Provider"), name))
        notes.append(_("New seeds are chosen, so the pictures differ from this one."))
    else:
        if mode == "other":
            aliases = [alias for alias in (usable or []) if alias != task.provider]
            chosen = provider or (aliases[0] if aliases else "")
            if not chosen or chosen == task.provider:
                raise AgainError(
                    _("No other provider is configured to make image #%(id)d again.")
                    % {"id": image.pk}
                )
            initial["provider"] = chosen
            carried.append((_("Made with"), f"{name} · {task.model}"))
            option = (usable or {}).get(chosen)
            if task.negative_prompt and not getattr(option, "supports_negative_prompt", True):
                initial["negative_prompt"] = ""
                notes.append(
                    _("%(provider)s takes no negative prompt, so it is left out.")
                    % {"provider": breaker.display_name(chosen)}
                )
        else:
            carried.append((_("Provider"), f"{name} · {task.model}"))
        if task.seed is not None:
            carried.append((_("Seed"), str(task.seed)))
        if whole_task:
            notes.append(
                _("Its whole task of %(count)d image(s) ended without files: all are asked for.")
                % {"count": task.num_images}
            )
        elif image.index > 0 and task.seed is not None:
            notes.append(
                _(
                    "This image was number %(position)d of %(count)d made with seed "
                    "%(seed)d; asked for alone with that seed, the provider may draw a "
                    "different picture."
                )
                % {"position": image.index + 1, "count": task.num_images, "seed": task.seed}
            )
    current = _current_model(initial["provider"])
    if mode != "other" and current and current != task.model:
        notes.append(
            _("%(provider)s now uses the model %(current)s; this image was made with %(model)s.")
            % {"provider": name, "current": current, "model": task.model}
        )
    return Prefill(image, mode, MODES[mode], initial, carried, notes, style_preset=preset)


def _current_model(alias: str) -> str:
    """The model ``alias`` is configured with now; empty when it is not configured."""
    try:
        with get_provider(alias) as backend:
            return backend.model
    except ImproperlyConfigured:
        return ""
