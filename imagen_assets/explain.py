"""What happened to an image, in a marketer's words, with what to do about it.

The pipeline records a provider's own words (``error_code`` and ``error_message`` on the
task, ``error_message`` on the image, all redacted of secrets already). The admin and
``imagen_status`` show :func:`explain` instead: a short title, one sentence of advice, and
the raw words kept as a secondary detail. :func:`classify` is the mapping from code and
message to a kind, a pure function; the words are in :data:`WORDS`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from django.core.exceptions import ImproperlyConfigured
from django.utils.functional import Promise as StrPromise
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from imagen_assets import breaker
from imagen_assets.models import GeneratedImage, GenerationTask, ProviderHealth
from imagen_assets.money import dollars
from imagen_assets.retired_models import RetiredModel, retired
from imagen_assets.status import BreakerState, ImageStatus, TaskStatus


class Kind(StrEnum):
    """Why an image has no file (or not yet)."""

    WITHHELD = "withheld"
    CANCELLED = "cancelled"
    PROMPT_REFUSED = "prompt_refused"
    REQUEST_REFUSED = "request_refused"
    PROVIDER_DOWN = "provider_down"
    KEY_REFUSED = "key_refused"
    MODEL_RETIRED = "model_retired"
    NO_CREDIT = "no_credit"
    NOT_SET_UP = "not_set_up"
    UNCERTAIN = "uncertain"
    UNREADABLE = "unreadable"
    DOWNLOAD_FAILED = "download_failed"
    FAILED = "failed"
    #: Still open: the provider is not answering (or asked to wait); tried again by itself.
    WAITING = "waiting"


#: Kinds shown in a neutral colour: nothing went wrong that anyone must fix.
NEUTRAL = frozenset({Kind.WITHHELD, Kind.CANCELLED, Kind.WAITING})

#: (title, advice) per kind. ``%(provider)s`` and ``%(model)s`` are filled in.
WORDS: dict[Kind, tuple[StrPromise, StrPromise]] = {
    Kind.WITHHELD: (
        _("Withheld by the provider"),
        _(
            "The provider's safety filter held this image back, so there is nothing to "
            "review. Generate again; if it keeps happening, edit the prompt."
        ),
    ),
    Kind.CANCELLED: (
        _("Cancelled"),
        _("The work was stopped before this image was made. Generate again if you still need it."),
    ),
    Kind.PROMPT_REFUSED: (
        _("The provider refused the prompt"),
        _(
            "%(provider)s would not make an image from this prompt (most likely its content "
            "rules). Edit the prompt and generate again."
        ),
    ),
    Kind.REQUEST_REFUSED: (
        _("The provider refused the request"),
        _(
            "%(provider)s did not accept one of the settings (size, number of images, "
            "negative prompt). Change them and generate again."
        ),
    ),
    Kind.PROVIDER_DOWN: (
        _("The provider did not answer"),
        _(
            "%(provider)s was down or too busy and the image was given up on. Generate "
            "again once it answers; the provider health page shows when it does."
        ),
    ),
    Kind.KEY_REFUSED: (
        _("The API key was refused"),
        _(
            "%(provider)s refused this site's API key. Tell an administrator: every image "
            "on %(provider)s fails until the key is fixed."
        ),
    ),
    Kind.MODEL_RETIRED: (
        _("The model %(model)s is no longer offered by %(provider)s"),
        _(
            "Ask an administrator to switch the provider's MODEL setting; until then every "
            "image asked of this model fails. Another provider may still offer it."
        ),
    ),
    Kind.NO_CREDIT: (
        _("The provider account has no credit left"),
        _("Tell an administrator to top up the %(provider)s account, then generate again."),
    ),
    Kind.NOT_SET_UP: (
        _("The provider is not set up on this site"),
        _("Tell an administrator: %(provider)s's settings could not be used."),
    ),
    Kind.UNCERTAIN: (
        _("Unknown whether the provider got the request"),
        _(
            "The connection broke while asking %(provider)s, so it may have made (and "
            "charged for) the image. Check its dashboard before generating again."
        ),
    ),
    Kind.UNREADABLE: (
        _("The provider's answer could not be read"),
        _("Generate again; if it happens again, tell an administrator."),
    ),
    Kind.DOWNLOAD_FAILED: (
        _("The image could not be downloaded"),
        _(
            "%(provider)s made the image, but its file could not be fetched or was "
            "refused when checked. Generate again; this one may have been charged."
        ),
    ),
    Kind.FAILED: (
        _("Failed"),
        _(
            "Something went wrong at %(provider)s. Generate again; if it keeps failing, "
            "tell an administrator."
        ),
    ),
    Kind.WAITING: (
        _("Waiting for the provider"),
        _(
            "%(provider)s is not answering or asked us to wait; this image will be tried "
            "again automatically."
        ),
    ),
}

# -- the mapping ------------------------------------------------------------------------------

#: Codes our own pipeline records (jobs.py) and the providers' documented ones
#: (docs/providers.md §1.7, §2.8).
CODES: dict[str, Kind] = {
    "api_key": Kind.KEY_REFUSED,
    "401": Kind.KEY_REFUSED,
    "403": Kind.KEY_REFUSED,
    "402": Kind.NO_CREDIT,
    "insufficient_balance": Kind.NO_CREDIT,
    "config": Kind.NOT_SET_UP,
    "invalid": Kind.REQUEST_REFUSED,
    "ambiguous": Kind.UNCERTAIN,
    "unexpected_response": Kind.UNREADABLE,
    "timeout": Kind.PROVIDER_DOWN,
    "unavailable": Kind.PROVIDER_DOWN,
    "attempts": Kind.PROVIDER_DOWN,
    "network": Kind.PROVIDER_DOWN,
    "upstream_unavailable": Kind.PROVIDER_DOWN,
    "upstream_rate_limited": Kind.PROVIDER_DOWN,
    "quota_window_exceeded": Kind.PROVIDER_DOWN,
    "429": Kind.PROVIDER_DOWN,
    "5000": Kind.PROVIDER_DOWN,
    "5003": Kind.PROVIDER_DOWN,
    "5004": Kind.PROVIDER_DOWN,
    "1200": Kind.PROMPT_REFUSED,  # WaveSpeed: content moderation
    "content_policy_violation": Kind.PROMPT_REFUSED,
    "upstream_bad_request": Kind.REQUEST_REFUSED,  # the message says whether it was the prompt
    "capability_violation": Kind.REQUEST_REFUSED,
    "invalid_aspect_ratio": Kind.REQUEST_REFUSED,
    "1400": Kind.REQUEST_REFUSED,
    "1401": Kind.REQUEST_REFUSED,
    "model_not_found": Kind.MODEL_RETIRED,
    "model_not_supported": Kind.MODEL_RETIRED,
    "unsupported_model": Kind.MODEL_RETIRED,
    "unknown_model": Kind.MODEL_RETIRED,
    "invalid_model": Kind.MODEL_RETIRED,
    "model_unavailable": Kind.MODEL_RETIRED,
    "model_delisted": Kind.MODEL_RETIRED,
    "price_not_configured": Kind.MODEL_RETIRED,  # Wave: a model it no longer prices
}

_MODEL_GONE = re.compile(
    r"\b(unknown|unsupported|invalid|delisted|retired|deprecated)\s+model\b"
    r"|\bmodel\b[^\n]{0,80}?\b(not found|unknown|unsupported|not supported|no longer|"
    r"delisted|retired|not available|unavailable|does not exist|doesn.t exist)\b",
    re.IGNORECASE,
)
_PROMPT = re.compile(
    r"\b(invalid prompt|prompt|content|moderation|safety|nsfw|policy|filtered|sensitive)\b",
    re.IGNORECASE,
)
_CODE_IN_MESSAGE = re.compile(r"\[([A-Za-z0-9_]+)\]")
_HTTP_IN_MESSAGE = re.compile(r"\bHTTP (\d{3})\b")
_KEY = re.compile(r"\brefused the API key\b|\binvalid (api key|authentication)\b", re.IGNORECASE)


def classify(code: str, message: str) -> Kind:
    """The kind of a failure from the code and message the pipeline kept (a pure mapping)."""
    code = (code or "").strip()
    message = message or ""
    if not code:
        # ProviderError's own words: "Wave: HTTP 400 [invalid_aspect_ratio]: ..."
        found = _CODE_IN_MESSAGE.search(message) or _HTTP_IN_MESSAGE.search(message)
        code = found.group(1) if found else ""
    if _MODEL_GONE.search(message):
        return Kind.MODEL_RETIRED
    kind = CODES.get(code.lower())
    if kind is None and code.isdigit() and len(code) == 3 and code.startswith("5"):
        kind = Kind.PROVIDER_DOWN  # an HTTP 5xx kept as the code
    if kind is None and _KEY.search(message):
        kind = Kind.KEY_REFUSED
    if kind in (None, Kind.REQUEST_REFUSED) and _PROMPT.search(message):
        # "[upstream_bad_request] Upstream returned: invalid prompt", WaveSpeed's
        # "Content is filtered due to unknown reasons" (docs/providers.md §2.2).
        return Kind.PROMPT_REFUSED
    return kind or Kind.FAILED


# -- an image --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Explanation:
    """What to tell a marketer about one image."""

    kind: Kind
    title: str
    advice: str
    #: What the provider or the pipeline said, redacted; shown as a secondary detail.
    detail: str = ""
    #: A sentence about what it cost, when that is known and worth saying.
    charge: str = ""

    @property
    def neutral(self) -> bool:
        return self.kind in NEUTRAL


def provider_name(alias: str) -> str:
    """How the admin names provider ``alias`` ("Wave"); the alias when not configured."""
    return breaker.display_name(alias)


def withheld_charge(task: GenerationTask) -> Decimal | None:
    """What the provider charged for the images it did not deliver, when known: 0 when
    the cost was reckoned from the delivered images (WaveSpeed reports no cost) or the
    provider's reported cost covers only those; ``None`` while the task has no cost."""
    if task.cost is None or not task.num_images:
        return None
    delivered = min(len(task.outputs or []), task.num_images)
    per_image = task.estimated_cost / task.num_images
    extra = task.cost - per_image * delivered
    return extra if extra >= Decimal("0.005") else Decimal(0)


def _withheld_charge_text(task: GenerationTask) -> str:
    extra = withheld_charge(task)
    if extra is None:
        return ""
    if not extra:
        return gettext("It was not charged.")
    delivered = min(len(task.outputs or []), task.num_images)
    return ngettext(
        "%(provider)s charged %(cost)s for the task although it delivered %(delivered)d "
        "image of %(asked)d: about %(extra)s of that paid for withheld images.",
        "%(provider)s charged %(cost)s for the task although it delivered %(delivered)d "
        "images of %(asked)d: about %(extra)s of that paid for withheld images.",
        delivered,
    ) % {
        "provider": provider_name(task.provider),
        "cost": dollars(task.cost or Decimal(0)),
        "delivered": delivered,
        "asked": task.num_images,
        "extra": dollars(extra),
    }


def _cancelled_charge_text(task: GenerationTask) -> str:
    if task.cost is None:
        return ""
    if not task.cost:
        return gettext("It was not charged.")
    return gettext("%(provider)s charged %(cost)s for the task.") % {
        "provider": provider_name(task.provider),
        "cost": dollars(task.cost),
    }


def _words(kind: Kind, provider: str, model: str) -> tuple[str, str]:
    title, advice = WORDS[kind]
    values = {"provider": provider, "model": model}
    return str(title) % values, str(advice) % values


def explain(image: GeneratedImage, *, health: ProviderHealth | None = None) -> Explanation | None:
    """Why ``image`` has no file, in plain words; None for a ready image, and for an open
    one that is simply being made. ``health`` is its provider's row when the caller looked
    it up (an open image whose provider is not answering is "waiting"); lists pass none."""
    task = image.task
    provider = provider_name(task.provider)
    detail = image.error_message or task.error_message
    if image.status == ImageStatus.SUCCEEDED:
        return None
    if image.is_open:
        down = health is not None and health.state != BreakerState.CLOSED
        # A queued task holding an error is waiting for a retry (hold_submit, defer_submit).
        held = image.status == ImageStatus.QUEUED and bool(task.error_message)
        if not (down or held or image.error_message):
            return None
        title, advice = _words(Kind.WAITING, provider, task.model)
        return Explanation(Kind.WAITING, title, advice, detail)
    if image.status == ImageStatus.FILTERED:
        title, advice = _words(Kind.WITHHELD, provider, task.model)
        return Explanation(Kind.WITHHELD, title, advice, detail, _withheld_charge_text(task))
    if image.status == ImageStatus.CANCELLED:
        title, advice = _words(Kind.CANCELLED, provider, task.model)
        return Explanation(Kind.CANCELLED, title, advice, detail, _cancelled_charge_text(task))
    if task.status == TaskStatus.SUCCEEDED:
        # The task delivered; this image's own file failed (a download, a refused file).
        kind = Kind.DOWNLOAD_FAILED
    else:
        kind = classify(task.error_code, task.error_message)
        row = _retired_row(task)
        if kind in (Kind.FAILED, Kind.REQUEST_REFUSED) and row is not None:
            kind = Kind.MODEL_RETIRED  # a model the table knows is gone, refused vaguely
    title, advice = _words(kind, provider, task.model)
    if kind is Kind.MODEL_RETIRED:
        row = _retired_row(task)
        if row is not None and row.replacement:
            advice += " " + gettext("Suggested replacement: %(model)s.") % {
                "model": row.replacement
            }
    return Explanation(kind, title, advice, detail)


def _retired_row(task: GenerationTask) -> RetiredModel | None:
    from imagen_assets.providers import get_provider_class

    try:
        backend = get_provider_class(task.provider)
    except ImproperlyConfigured:  # no longer configured: nothing to match
        return None
    row = retired(backend, task.model)
    if row is None or task.created_at.date() < row.retired_on:
        return None
    return row
