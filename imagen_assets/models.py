"""Campaigns, provider tasks and the images they produce. No I/O here: see services and jobs."""

from __future__ import annotations

import secrets
import uuid
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction
from django.db.models import Case, Count, F, OuterRef, Q, Subquery, Sum, Value, When
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from imagen_assets import alt_text
from imagen_assets.imagen_sizes import ASPECT_RATIOS
from imagen_assets.prompt_text import PromptError, find_banned_term, placeholders
from imagen_assets.status import (
    CANCELLED_MAY_BILL,
    FAILED_IMAGE_STATUSES,
    OPEN_IMAGE_STATUSES,
    OPEN_TASK_STATUSES,
    BreakerState,
    CampaignStatus,
    Decision,
    ImageStatus,
    ReviewStatus,
    TaskStatus,
)
from imagen_assets.storage import image_storage, image_upload_to, thumbnail_upload_to

#: The longest provider task id or webhook id stored; a webhook carrying a longer one is
#: refused (400) rather than stored cut short, where two ids sharing their first
#: characters would become one (docs/reliability.md W5).
MAX_ID_LENGTH = 200


def new_callback_token() -> str:
    return secrets.token_urlsafe(32)


ASPECT_RATIO_CHOICES = [(ratio, ratio) for ratio in ASPECT_RATIOS]
MONEY = models.DecimalField(max_digits=14, decimal_places=4)


def task_spend() -> Case:
    """What one task counts against its campaign's budget: the actual cost once it
    succeeded, its estimate while it is open or when it was cancelled after it may have
    reached its provider (``CANCELLED_MAY_BILL``: the provider may still bill it), nothing
    once it failed or was cancelled free of charge."""
    return Case(
        When(status=TaskStatus.SUCCEEDED, then=Coalesce(F("cost"), Value(Decimal(0)))),
        When(status__in=OPEN_TASK_STATUSES, then=F("estimated_cost")),
        When(status=TaskStatus.CANCELLED, error_code=CANCELLED_MAY_BILL, then=F("estimated_cost")),
        default=Value(Decimal(0)),
        output_field=MONEY,
    )


def counted_tasks() -> Q:
    """The tasks whose images and spend count against a budget, a quota and the spend
    report: open or delivered, and cancelled ones the provider may still bill (the rows
    for which :func:`task_spend` may be more than zero)."""
    return Q(status__in=(*OPEN_TASK_STATUSES, TaskStatus.SUCCEEDED)) | Q(
        status=TaskStatus.CANCELLED, error_code=CANCELLED_MAY_BILL
    )


class CampaignQuerySet(models.QuerySet["Campaign"]):
    def with_stats(self) -> CampaignQuerySet:
        """Annotate image counts and committed spend, as subqueries (no row multiplication,
        one query for any number of campaigns): n_images, n_ready, n_approved, n_pending
        (pending review: ready images only), n_open (queued or generating), n_failed,
        n_withheld and n_cancelled (three outcomes, counted apart), committed."""

        def images(**filters: Any) -> Coalesce:
            counted = (
                GeneratedImage.objects.filter(campaign=OuterRef("pk"), **filters)
                .order_by()
                .values("campaign")
                .annotate(n=Count("pk"))
                .values("n")[:1]
            )
            return Coalesce(Subquery(counted, output_field=models.IntegerField()), Value(0))

        spend = (
            GenerationTask.objects.filter(campaign=OuterRef("pk"))
            .order_by()
            .values("campaign")
            .annotate(total=Sum(task_spend()))
            .values("total")[:1]
        )
        return self.annotate(
            n_images=images(),
            n_ready=images(status=GeneratedImage.Status.SUCCEEDED),
            n_approved=images(review_status=GeneratedImage.Review.APPROVED),
            n_pending=images(
                status=GeneratedImage.Status.SUCCEEDED, review_status=GeneratedImage.Review.PENDING
            ),
            n_open=images(status__in=GeneratedImage.OPEN_STATUSES),
            n_failed=images(status__in=GeneratedImage.FAILED_STATUSES),
            n_withheld=images(status=GeneratedImage.Status.FILTERED),
            n_cancelled=images(status=GeneratedImage.Status.CANCELLED),
            committed=Coalesce(Subquery(spend, output_field=MONEY), Value(Decimal(0))),
        )


class Brand(models.Model):
    """A brand kit, shared by the campaigns that use it: the words put around every prompt,
    the terms a prompt must never contain, the defaults of new images, style presets and
    prompt templates. A campaign's own settings override the brand's where they are set."""

    name = models.CharField(_("name"), max_length=200, unique=True)
    prompt_prefix = models.TextField(
        _("prompt prefix"),
        blank=True,
        help_text=_("Put before every prompt, e.g. “Product photograph for Meadow & Co.:”."),
    )
    prompt_suffix = models.TextField(
        _("prompt suffix"),
        blank=True,
        help_text=_("Put after every prompt: the brand's style, palette and light."),
    )
    banned_terms = models.TextField(
        _("banned terms"),
        blank=True,
        help_text=_(
            "One word or phrase per line. A request whose prompt contains one is refused "
            "before anything is spent. Case does not matter; whole words are matched, and "
            "Chinese, Japanese or Korean terms anywhere in the text."
        ),
    )
    default_negative_prompt = models.TextField(
        _("default negative prompt"),
        blank=True,
        help_text=_("Used when the campaign has no negative prompt of its own."),
    )
    default_aspect_ratio = models.CharField(
        _("default aspect ratio"),
        max_length=8,
        choices=ASPECT_RATIO_CHOICES,
        blank=True,
        help_text=_("Used when the campaign has no aspect ratio of its own; empty means 1:1."),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("brand")
        verbose_name_plural = _("brands")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def banned_term_list(self) -> list[str]:
        """The banned terms, one per non-empty line, surrounding spaces removed."""
        return [line.strip() for line in self.banned_terms.splitlines() if line.strip()]

    def clean(self) -> None:
        terms = self.banned_term_list()
        for name in ("prompt_prefix", "prompt_suffix"):
            term = find_banned_term(getattr(self, name), terms)
            if term is not None:
                raise ValidationError(
                    {
                        name: _(
                            "“%(term)s” is one of this brand's banned terms: every prompt "
                            "would be refused."
                        )
                        % {"term": term}
                    }
                )


class StylePreset(models.Model):
    """Words a marketer can add to a prompt by picking a name, e.g. "Studio product shot"."""

    brand = models.ForeignKey(
        Brand, verbose_name=_("brand"), on_delete=models.CASCADE, related_name="presets"
    )
    name = models.CharField(_("name"), max_length=100)
    prompt = models.TextField(
        _("words added"),
        help_text=_("Added after the prompt, e.g. “seamless white backdrop, softbox light”."),
    )
    position = models.PositiveSmallIntegerField(_("position"), default=0)

    class Meta:
        verbose_name = _("style preset")
        verbose_name_plural = _("style presets")
        ordering = ["brand", "position", "name"]
        constraints = [
            models.UniqueConstraint(fields=["brand", "name"], name="imagen_preset_unique_name")
        ]

    def __str__(self) -> str:
        return self.name


class PromptTemplate(models.Model):
    """A saved prompt with ``{placeholders}`` (“A {product} on a {surface}”), shared by the
    campaigns of its brand. Every save that changes it keeps a :class:`PromptTemplateVersion`
    (save it with ``changed_by``), and a request records the version it used."""

    brand = models.ForeignKey(
        Brand, verbose_name=_("brand"), on_delete=models.CASCADE, related_name="templates"
    )
    name = models.CharField(_("name"), max_length=100)
    text = models.TextField(
        _("text"),
        help_text=_(
            "The prompt, with a {placeholder} for each part filled in when generating, e.g. "
            "“A {product} on a {surface}”. Write {{ or }} for a brace itself."
        ),
    )
    version = models.PositiveIntegerField(_("version"), default=0, editable=False)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("changed by"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
    )
    updated_at = models.DateTimeField(_("changed"), auto_now=True)

    class Meta:
        verbose_name = _("prompt template")
        verbose_name_plural = _("prompt templates")
        ordering = ["brand", "name"]
        constraints = [
            models.UniqueConstraint(fields=["brand", "name"], name="imagen_template_unique_name")
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, changed_by: Any = None, **kwargs: Any) -> None:
        """Save, and keep a version when the name or text is new or changed (by
        ``changed_by``, a user or None)."""
        with transaction.atomic():
            previous = None
            if self.pk is not None:
                previous = (
                    PromptTemplate.objects.select_for_update()
                    .filter(pk=self.pk)
                    .values("name", "text", "version")
                    .first()
                )
            changed = previous is None or (previous["name"], previous["text"]) != (
                self.name,
                self.text,
            )
            if changed:
                self.version = (previous["version"] if previous else 0) + 1
                self.updated_by = changed_by
                if kwargs.get("update_fields") is not None:
                    kwargs["update_fields"] = {
                        *kwargs["update_fields"],
                        "version",
                        "updated_by",
                        "updated_at",
                    }
            super().save(*args, **kwargs)
            if changed:
                PromptTemplateVersion.objects.create(
                    template=self,
                    number=self.version,
                    name=self.name,
                    text=self.text,
                    changed_by=changed_by,
                )

    def placeholders(self) -> list[str]:
        """The placeholder names of its text, in order (see :mod:`imagen_assets.prompt_text`)."""
        return placeholders(self.text)

    def clean(self) -> None:
        try:
            placeholders(self.text)
        except PromptError as exc:
            raise ValidationError({"text": str(exc)}) from None

    def current_version(self) -> PromptTemplateVersion:
        return self.versions.get(number=self.version)


class PromptTemplateVersion(models.Model):
    """One saved state of a template: its text, who saved it and when. Never changed."""

    template = models.ForeignKey(
        PromptTemplate,
        verbose_name=_("template"),
        on_delete=models.CASCADE,
        related_name="versions",
    )
    number = models.PositiveIntegerField(_("version"))
    name = models.CharField(_("name"), max_length=100)
    text = models.TextField(_("text"))
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("changed by"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    changed_at = models.DateTimeField(_("changed"), default=timezone.now)

    class Meta:
        verbose_name = _("prompt template version")
        verbose_name_plural = _("prompt template versions")
        ordering = ["template", "-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["template", "number"], name="imagen_template_version_unique"
            )
        ]

    def __str__(self) -> str:
        return _("%(template)s, version %(number)d") % {
            "template": self.name,
            "number": self.number,
        }


class Campaign(models.Model):
    """A body of marketing work: what it is about, how its images should look, what it may cost."""

    name = models.CharField(_("name"), max_length=200)
    slug = models.SlugField(_("slug"), max_length=100, unique=True)
    brief = models.TextField(_("brief"), blank=True, help_text=_("What the campaign is for."))
    brand = models.ForeignKey(
        Brand,
        verbose_name=_("brand"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="campaigns",
        help_text=_(
            "The brand kit: words around every prompt, banned terms, defaults, style presets "
            "and templates. The campaign's own settings below override the brand's."
        ),
    )
    # Named brand_prompt since before brands existed; it is the campaign's own words now.
    brand_prompt = models.TextField(
        _("campaign prompt"),
        blank=True,
        help_text=_(
            "Added to every prompt of this campaign, after the style preset and before the "
            "brand's suffix."
        ),
    )
    default_provider = models.CharField(
        _("default provider"),
        max_length=50,
        blank=True,
        help_text=_("Provider alias; empty means the site's default."),
    )
    default_aspect_ratio = models.CharField(
        _("default aspect ratio"),
        max_length=8,
        choices=ASPECT_RATIO_CHOICES,
        blank=True,
        default="",
        help_text=_("Empty means the brand's, else 1:1."),
    )
    default_negative_prompt = models.TextField(
        _("default negative prompt"), blank=True, help_text=_("Empty means the brand's.")
    )
    budget = models.DecimalField(
        _("budget (USD)"),
        max_digits=10,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text=_("Most this campaign may spend on generation; empty means no limit."),
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    # -- sign-off (written only by imagen_assets.review) ------------------------------------
    status = models.CharField(
        _("status"),
        max_length=20,
        choices=CampaignStatus.choices,
        default=CampaignStatus.DRAFT,
        db_index=True,
    )
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("submitted by"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    submitted_at = models.DateTimeField(_("submitted"), null=True, blank=True)
    # -- review policy -----------------------------------------------------------------------
    required_approvals = models.PositiveSmallIntegerField(
        _("approvals required"),
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(10)],
        help_text=_("How many different reviewers must approve an image."),
    )
    reviewer_group = models.ForeignKey(
        "auth.Group",
        verbose_name=_("reviewer group"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text=_(
            "Only members of this group may review the campaign; empty means anyone who "
            "may approve images."
        ),
    )
    allow_self_approval = models.BooleanField(
        _("allow self-approval"),
        default=False,
        help_text=_(
            "Let the person who asked for an image approve it, and whoever submitted the "
            "campaign sign it off. Off: four eyes."
        ),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    objects = CampaignQuerySet.as_manager()

    Status = CampaignStatus

    class Meta:
        verbose_name = _("campaign")
        verbose_name_plural = _("campaigns")
        ordering = ["-created_at"]
        permissions = [
            ("generate_images", _("Can generate images for campaigns")),
            ("signoff_campaign", _("Can sign off campaigns or request changes")),
            ("change_review_policy", _("Can change a campaign's review policy")),
            ("export_campaign", _("Can download a campaign's approved images")),
            ("share_campaign", _("Can invite outside reviewers to a campaign")),
        ]

    def __str__(self) -> str:
        return self.name

    #: Written only by imagen_assets.review (with update_fields naming them).
    SIGN_OFF_FIELDS = ("status", "submitted_by", "submitted_at")

    def save(self, *args: Any, **kwargs: Any) -> None:
        # A campaign saved whole (the admin's form, host code) keeps the sign-off state it
        # has in the database: an instance loaded before a sign-off must not undo it.
        if not self._state.adding and kwargs.get("update_fields") is None:
            kwargs["update_fields"] = [
                field.name
                for field in self._meta.concrete_fields
                if not field.primary_key and field.name not in self.SIGN_OFF_FIELDS
            ]
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse("admin:imagen_assets_campaign_change", args=[self.pk])

    def build_prompt(self, prompt: str, style: str = "") -> str:
        """The prompt sent to the provider, the one place it is made: the brand's prefix,
        the user's words, the style preset's words, the campaign's own words, the brand's
        suffix; each stripped, empty ones left out, separated by a blank line.

        :func:`imagen_assets.prompts.compose_prompt` fills templates and checks banned
        terms around it.
        """
        brand = self.brand
        parts = [
            brand.prompt_prefix if brand else "",
            prompt,
            style,
            self.brand_prompt,
            brand.prompt_suffix if brand else "",
        ]
        return "\n\n".join(part.strip() for part in parts if part.strip())

    def effective_aspect_ratio(self) -> str:
        """The aspect ratio of new images: the campaign's, else its brand's, else 1:1."""
        brand_ratio = self.brand.default_aspect_ratio if self.brand else ""
        return self.default_aspect_ratio or brand_ratio or "1:1"

    def effective_negative_prompt(self) -> str:
        """The negative prompt of new images: the campaign's, else its brand's."""
        if self.default_negative_prompt.strip():
            return self.default_negative_prompt
        return self.brand.default_negative_prompt if self.brand else ""

    def committed_spend(self) -> Decimal:
        """Money spent or reserved: actual cost of finished tasks plus estimates of open ones."""
        total = self.tasks.aggregate(total=Sum(task_spend()))["total"]
        return total or Decimal(0)

    def approved_images(self) -> models.QuerySet[GeneratedImage]:
        """The images marketers may use: approved ones only."""
        return self.images.approved()


class GenerationRequest(models.Model):
    """One ask of a marketer (the generate form, a command, "Generate again"): the tasks
    it made and their images belong together, so a request reads "3 of 8 ready"."""

    class Origin(models.TextChoices):
        NEW = "new", _("New request")
        RETRY = "retry", _("Retry")
        MORE_LIKE_THIS = "more_like_this", _("More like this")
        OTHER_PROVIDER = "other_provider", _("Same seed elsewhere")
        BATCH = "batch", _("Batch")

    campaign = models.ForeignKey(
        Campaign, verbose_name=_("campaign"), on_delete=models.CASCADE, related_name="requests"
    )
    prompt = models.TextField(
        _("prompt"), blank=True, help_text=_("What the marketer wrote, before the brand's words.")
    )
    count = models.PositiveIntegerField(_("images asked for"), default=0)
    origin = models.CharField(
        _("origin"), max_length=20, choices=Origin.choices, default=Origin.NEW
    )
    source_image = models.ForeignKey(
        "GeneratedImage",
        verbose_name=_("made from"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("requested by"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    # -- brand kit: what the prompt was made from ------------------------------------------
    style_preset = models.ForeignKey(
        StylePreset,
        verbose_name=_("style preset"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    template_version = models.ForeignKey(
        PromptTemplateVersion,
        verbose_name=_("template version"),
        # The record of what made a request outlives no template: a used one is kept.
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="requests",
    )
    template_values = models.JSONField(
        _("template values"),
        default=dict,
        blank=True,
        help_text=_("What was filled in for each placeholder of the template."),
    )
    created_at = models.DateTimeField(_("requested"), default=timezone.now, db_index=True)
    #: The confirmed preview a batch was made from (its signed token's nonce): the same
    #: preview confirmed twice (a double click, the back button) makes one batch.
    batch_key = models.CharField(
        max_length=32, null=True, blank=True, unique=True, editable=False, default=None
    )

    class Meta:
        verbose_name = _("generation request")
        verbose_name_plural = _("generation requests")
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return _("Request #%(id)s") % {"id": self.pk}


class GenerationTask(models.Model):
    """One call to a provider: everything sent, everything learned, and what it cost."""

    Status = TaskStatus

    campaign = models.ForeignKey(
        Campaign, verbose_name=_("campaign"), on_delete=models.CASCADE, related_name="tasks"
    )
    request = models.ForeignKey(
        GenerationRequest,
        verbose_name=_("request"),
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="tasks",
        help_text=_(
            "The ask that made this task (empty for tasks made before requests were kept)."
        ),
    )
    provider = models.CharField(_("provider"), max_length=50)
    model = models.CharField(_("model"), max_length=100)
    written_prompt = models.TextField(
        _("prompt as written"),
        blank=True,
        help_text=_("The marketer's words for this task, before the brand kit's were added."),
    )
    prompt = models.TextField(_("final prompt"))
    negative_prompt = models.TextField(_("negative prompt"), blank=True)
    aspect_ratio = models.CharField(_("aspect ratio"), max_length=8, choices=ASPECT_RATIO_CHOICES)
    num_images = models.PositiveSmallIntegerField(
        _("images"), validators=[MinValueValidator(1), MaxValueValidator(4)]
    )
    seed = models.BigIntegerField(_("seed"), null=True, blank=True)
    request_body = models.JSONField(
        _("request sent"), default=dict, blank=True, help_text=_("The exact JSON body submitted.")
    )
    idempotency_key = models.UUIDField(_("idempotency key"), default=uuid.uuid4, editable=False)
    callback_token = models.CharField(
        _("callback token"), max_length=64, unique=True, default=new_callback_token, editable=False
    )
    provider_task_id = models.CharField(
        _("provider task id"), max_length=MAX_ID_LENGTH, blank=True, db_index=True
    )
    status = models.CharField(
        _("status"),
        max_length=20,
        choices=TaskStatus.choices,
        default=TaskStatus.QUEUED,
        db_index=True,
    )
    progress = models.PositiveSmallIntegerField(_("progress"), default=0)
    outputs = models.JSONField(
        _("outputs"), default=list, blank=True, help_text=_("Result URLs the provider returned.")
    )
    error_code = models.CharField(_("error code"), max_length=100, blank=True)
    error_message = models.TextField(_("error"), blank=True)
    attempts = models.PositiveSmallIntegerField(_("submit attempts"), default=0)
    polls = models.PositiveIntegerField(_("status reads"), default=0)
    estimated_cost = models.DecimalField(
        _("estimated cost (USD)"), max_digits=10, decimal_places=4, default=Decimal(0)
    )
    cost = models.DecimalField(
        _("cost (USD)"), max_digits=10, decimal_places=4, null=True, blank=True
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("requested by"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    # While set and in the future, a submit job owns this task (crash-safe claim); its value
    # also identifies that job's claim when it saves the provider's task id.
    submit_lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    # Set when a submit attempt starts, cleared when it ends with a known outcome. Still set
    # at the next attempt: the last one stopped mid-call (a crash) and may have been billed.
    submit_started_at = models.DateTimeField(null=True, blank=True, editable=False)
    # When the next status read is due; a read queued before that (a duplicate) does nothing.
    next_poll_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(_("created"), default=timezone.now, db_index=True)
    submitted_at = models.DateTimeField(_("submitted"), null=True, blank=True)
    completed_at = models.DateTimeField(_("completed"), null=True, blank=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True, db_index=True)

    class Meta:
        verbose_name = _("generation task")
        verbose_name_plural = _("generation tasks")
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(progress__lte=100), name="imagen_task_progress_lte_100"
            ),
        ]
        indexes = [
            # How long the provider has been taking (imagen_assets.latency): its last
            # tasks, newest first.
            models.Index(fields=["provider", "model", "-completed_at"], name="imagen_task_latency"),
            # Tasks in flight and waiting per provider (imagen_assets.capacity).
            models.Index(fields=["provider", "status"], name="imagen_task_provider_status"),
        ]

    def __str__(self) -> str:
        # No status here: the admin shows it with the images delivered ("Delivered 3 of 4").
        return _("Task #%(id)s") % {"id": self.pk}

    @property
    def status_enum(self) -> TaskStatus:
        return TaskStatus(self.status)

    def prompt_as_written(self, campaign: Campaign | None = None) -> str:
        """What the marketer wrote for this task, before the brand kit's and the campaign's
        words: recorded on the task (a batch's lines differ), else its request's (one-line)
        prompt, else, for tasks older than both, the final prompt without the campaign's
        words (the only ones added then). ``campaign``: the task's, when the caller has it
        loaded already (a list: no query per row)."""
        if self.written_prompt:
            return self.written_prompt
        request = self.request
        if request is not None and request.prompt and request.origin != request.Origin.BATCH:
            return request.prompt
        campaign_words = (campaign or self.campaign).brand_prompt.strip()
        if campaign_words and self.prompt.endswith("\n\n" + campaign_words):
            return self.prompt[: -len(campaign_words) - 2]
        return self.prompt

    def draft_alt_text(self) -> str:
        """Alt text for this task's images: the marketer's prompt (the request's, else the
        final prompt without the campaign's brand words), see :func:`alt_text.draft`."""
        request = self.request if self.request_id else None
        # A batch's request holds all its prompts; its images got their own at creation.
        if request is not None and request.prompt and request.origin != "batch":
            return alt_text.draft(request.prompt) or str(_("Generated image"))
        brand = self.campaign.brand_prompt if self.campaign_id else ""
        return alt_text.draft(self.prompt, brand_words=brand) or str(_("Generated image"))

    @property
    def is_terminal(self) -> bool:
        return self.status_enum.terminal


def protect_approved(collector: Any, field: Any, sub_objs: Any, using: str) -> None:
    """``on_delete`` of an image's campaign and task: cascade, unless an approved image
    would go with them (approved means frozen; revoke its approval first)."""
    approved = [image for image in sub_objs if image.review_status == ReviewStatus.APPROVED]
    if approved:
        raise models.ProtectedError(
            f"Cannot delete this {field.remote_field.model._meta.verbose_name}: it holds "
            f"{len(approved)} approved image(s). Revoke their approval first, or archive it.",
            set(approved),
        )
    models.CASCADE(collector, field, sub_objs, using)


class ImageQuerySet(models.QuerySet["GeneratedImage"]):
    def approved(self) -> ImageQuerySet:
        return self.filter(review_status=GeneratedImage.Review.APPROVED)

    def pending_review(self) -> ImageQuerySet:
        """Ready images whose current round is undecided (never failed, withheld or
        cancelled ones: those are not reviewable)."""
        return self.filter(
            status=GeneratedImage.Status.SUCCEEDED, review_status=GeneratedImage.Review.PENDING
        )

    def unfinished(self) -> ImageQuerySet:
        return self.filter(status__in=GeneratedImage.OPEN_STATUSES)


class GeneratedImage(models.Model):
    """One output image of a task: its file, what it is, and whether it may be used."""

    Status = ImageStatus
    Review = ReviewStatus
    OPEN_STATUSES = OPEN_IMAGE_STATUSES
    FAILED_STATUSES = FAILED_IMAGE_STATUSES

    task = models.ForeignKey(
        GenerationTask, verbose_name=_("task"), on_delete=protect_approved, related_name="images"
    )
    campaign = models.ForeignKey(
        Campaign, verbose_name=_("campaign"), on_delete=protect_approved, related_name="images"
    )
    index = models.PositiveSmallIntegerField(_("position in task"))
    status = models.CharField(
        _("status"), max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    error_message = models.TextField(_("error"), blank=True)
    source_url = models.URLField(_("provider URL"), max_length=2000, blank=True)
    nsfw = models.BooleanField(_("flagged NSFW by provider"), default=False)
    alt_text = models.CharField(
        _("alt text"),
        max_length=alt_text.MAX_LENGTH,
        blank=True,
        help_text=_(
            "What the image shows, for people who cannot see it (read aloud by screen "
            "readers, shown when the image does not load). Drafted from the prompt; edit it "
            "freely: it is not the image, so editing it changes no review."
        ),
    )
    file = models.ImageField(
        _("image"),
        storage=image_storage,
        upload_to=image_upload_to,
        max_length=300,
        blank=True,
        width_field="width",
        height_field="height",
    )
    thumbnail = models.ImageField(
        _("thumbnail"),
        storage=image_storage,
        upload_to=thumbnail_upload_to,
        max_length=300,
        blank=True,
    )
    width = models.PositiveIntegerField(_("width"), null=True, blank=True)
    height = models.PositiveIntegerField(_("height"), null=True, blank=True)
    bytes = models.PositiveBigIntegerField(_("size in bytes"), null=True, blank=True)
    # Of the stored file: a clean copy written from the served file's pixels (imaging.py).
    sha256 = models.CharField(_("SHA-256"), max_length=64, blank=True, db_index=True)
    content_type = models.CharField(_("content type"), max_length=50, blank=True)
    served_sha256 = models.CharField(
        _("SHA-256 of the provider's file"),
        max_length=64,
        blank=True,
        help_text=_("The file the provider served, before it was cleaned for storage."),
    )
    provider_c2pa = models.BooleanField(
        _("provider's file had C2PA credentials"),
        default=False,
        help_text=_(
            "The provider's file carried a C2PA manifest (content credentials). The stored "
            "copy is written again from the pixels, so the manifest no longer applies to it."
        ),
    )
    # Derived from the decisions of the current round (imagen_assets.review), kept here so
    # lists stay one query; "none" until the image is ready, and for good when it is not.
    review_status = models.CharField(
        _("review"), max_length=20, choices=Review.choices, default=Review.NONE, db_index=True
    )
    review_round = models.PositiveIntegerField(_("review round"), default=1)
    # The decision that decided the current round (empty while it is pending).
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("reviewed by"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    reviewed_at = models.DateTimeField(_("reviewed at"), null=True, blank=True)
    review_note = models.TextField(_("review note"), blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now, db_index=True)
    completed_at = models.DateTimeField(_("completed"), null=True, blank=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    objects = ImageQuerySet.as_manager()

    class Meta:
        verbose_name = _("generated image")
        verbose_name_plural = _("generated images")
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["task", "index"], name="imagen_image_task_index"),
        ]
        indexes = [
            models.Index(fields=["campaign", "-created_at"], name="imagen_image_campaign_idx"),
            # Covers the per-campaign counts of the campaign list (with_stats()).
            models.Index(
                fields=["campaign", "status", "review_status"], name="imagen_image_counts_idx"
            ),
        ]
        permissions = [
            ("approve_generatedimage", _("Can approve generated images")),
            ("reject_generatedimage", _("Can reject generated images")),
            ("revoke_generatedimage", _("Can revoke the review of generated images")),
        ]

    def __str__(self) -> str:
        return _("Image #%(id)s of %(campaign)s") % {"id": self.pk, "campaign": self.campaign}

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Keep the derived review status true for rows saved whole (fixtures, the shell):
        # only a ready image is reviewable. The pipeline and the review module update
        # both fields together themselves.
        if self.status != ImageStatus.SUCCEEDED:
            self.review_status = ReviewStatus.NONE
        elif self.review_status == ReviewStatus.NONE:
            self.review_status = ReviewStatus.PENDING
        if not self.alt_text and kwargs.get("update_fields") is None and self.task_id:
            # Never empty: rows made outside services.request_images get a draft too.
            self.alt_text = self.task.draft_alt_text()
        super().save(*args, **kwargs)

    @property
    def is_reviewable(self) -> bool:
        return self.status == ImageStatus.SUCCEEDED

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATUSES

    def reproduction(self) -> dict[str, Any]:
        """Everything needed to ask for this image again."""
        task = self.task
        return {
            "provider": task.provider,
            "model": task.model,
            "request_body": task.request_body,
            "seed": task.seed,
            "index": self.index,
        }


class WebhookEvent(models.Model):
    """A webhook delivery we accepted: kept for deduplication and support."""

    provider = models.CharField(_("provider"), max_length=50)
    event_id = models.CharField(_("event id"), max_length=MAX_ID_LENGTH)
    provider_task_id = models.CharField(
        _("provider task id"), max_length=MAX_ID_LENGTH, db_index=True
    )
    # No foreign-key constraint in the database (docs/reliability.md W13): checking one
    # makes the insert take a KEY SHARE lock on the task's row, so a webhook would wait
    # behind any job holding that row FOR UPDATE. Deleting a task still sets this to NULL
    # (Django does that, not the database); a reader goes by ``task_id`` and treats an id
    # with no row as no task.
    task = models.ForeignKey(
        GenerationTask,
        verbose_name=_("task"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="webhook_events",
        db_constraint=False,
    )
    payload = models.JSONField(_("payload"), default=dict)
    # The task state a signed webhook reported (authoritative); None when the body is
    # only a hint and the task must be re-read from the provider.
    state = models.JSONField(_("reported state"), null=True, blank=True)
    received_at = models.DateTimeField(_("received"), default=timezone.now)
    processed_at = models.DateTimeField(_("processed"), null=True, blank=True)
    outcome = models.CharField(_("outcome"), max_length=200, blank=True)
    # While set and in the future, a job is processing this event (it may take the other
    # events waiting with its own, imagen_assets.jobs.process_webhook).
    claimed_until = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("webhook event")
        verbose_name_plural = _("webhook events")
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "event_id"], name="imagen_webhook_event_unique"
            ),
        ]
        indexes = [
            # The events still to process (a job takes those waiting with its own).
            models.Index(
                fields=["received_at"],
                condition=Q(processed_at__isnull=True),
                name="imagen_webhook_pending",
            ),
        ]

    def __str__(self) -> str:
        return _("%(provider)s webhook %(event)s") % {
            "provider": self.provider,
            "event": self.event_id,
        }


class ProviderHealth(models.Model):
    """How a provider has been answering, one row per alias, shared by every worker: its
    circuit breaker (:mod:`imagen_assets.breaker`) and a refused API key. Written only by
    :mod:`imagen_assets.breaker`; no row means "answering"."""

    provider = models.CharField(_("provider"), max_length=50, unique=True)
    state = models.CharField(
        _("state"), max_length=10, choices=BreakerState.choices, default=BreakerState.CLOSED
    )
    # Transient failures (no answer, 5xx) in a row; any answer resets it.
    failures = models.PositiveIntegerField(_("failures in a row"), default=0)
    # The first of those failures: "not answering since".
    failing_since = models.DateTimeField(_("failing since"), null=True, blank=True)
    # Open: when one probe call may go. Half-open: when the probe's claim lapses.
    retry_at = models.DateTimeField(_("next try"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    # The provider refused the API key (HTTP 401/403): a configuration alert until a call
    # succeeds again.
    key_refused_at = models.DateTimeField(_("API key refused"), null=True, blank=True)
    key_refused_message = models.TextField(_("API key refusal"), blank=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("provider health")
        verbose_name_plural = _("provider health")
        ordering = ["provider"]

    def __str__(self) -> str:
        return f"{self.provider}: {self.get_state_display()}"


class UserQuota(models.Model):
    """One user's daily quota, overriding the site's (``USER_DAILY_IMAGES``,
    ``USER_DAILY_SPEND``) where set; read by :func:`imagen_assets.quotas.quota_for`."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        on_delete=models.CASCADE,
        related_name="imagen_quota",
    )
    images_per_day = models.PositiveIntegerField(
        _("images per day"),
        null=True,
        blank=True,
        help_text=_("Most images this user may ask for in a day; empty means the site's default."),
    )
    spend_per_day = models.DecimalField(
        _("spend per day (USD)"),
        max_digits=10,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text=_("Most this user's requests may cost in a day; empty means the site's default."),
    )
    unlimited = models.BooleanField(
        _("no daily quota"),
        default=False,
        help_text=_("Lift both limits for this user, whatever the site's defaults."),
    )
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("user quota")
        verbose_name_plural = _("user quotas")
        ordering = ["user_id"]

    def __str__(self) -> str:
        return _("Daily quota of %(user)s") % {"user": self.user}


# -- review: append-only records ---------------------------------------------------------------


class ReviewDecision(models.Model):
    """One reviewer's decision on one image in one round. Never updated or deleted by the
    app: the image's review status is derived from these rows (imagen_assets.review)."""

    image = models.ForeignKey(
        GeneratedImage,
        verbose_name=_("image"),
        on_delete=models.CASCADE,
        related_name="decisions",
    )
    round = models.PositiveIntegerField(_("round"))
    decision = models.CharField(_("decision"), max_length=10, choices=Decision.choices)
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("reviewer"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    #: The outside reviewer's address, for a decision made through a shared link.
    reviewer_email = models.EmailField(_("outside reviewer"), blank=True)
    #: Who decided, as text (username or address): stays readable if the user is deleted,
    #: and identifies the reviewer within a round.
    reviewer_label = models.CharField(_("reviewer"), max_length=254)
    note = models.TextField(_("note"), blank=True)
    created_at = models.DateTimeField(_("decided"), default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("review decision")
        verbose_name_plural = _("review decisions")
        ordering = ["created_at", "pk"]
        constraints = [
            # One approve or reject per reviewer per round, whatever the code above does:
            # a user by id (renaming them does not make a second reviewer), an outside
            # reviewer by address (stored lower-case).
            models.UniqueConstraint(
                fields=["image", "round", "reviewer"],
                condition=Q(decision__in=["approve", "reject"], reviewer__isnull=False),
                name="imagen_one_decision_per_round",
            ),
            models.UniqueConstraint(
                fields=["image", "round", "reviewer_email"],
                condition=Q(decision__in=["approve", "reject"], reviewer__isnull=True)
                & ~Q(reviewer_email=""),
                name="imagen_one_outside_decision_per_round",
            ),
        ]
        indexes = [models.Index(fields=["image", "round"], name="imagen_decision_round_idx")]

    def __str__(self) -> str:
        return _("%(reviewer)s: %(decision)s, image #%(id)s") % {
            "reviewer": self.reviewer_label,
            "decision": self.get_decision_display(),
            "id": self.image_id,
        }


class Comment(models.Model):
    """A note on an image, in its thread; a rejection's reason is one too."""

    image = models.ForeignKey(
        GeneratedImage, verbose_name=_("image"), on_delete=models.CASCADE, related_name="comments"
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("author"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    author_label = models.CharField(_("author"), max_length=254)
    text = models.TextField(_("text"))
    created_at = models.DateTimeField(_("written"), default=timezone.now)

    class Meta:
        verbose_name = _("comment")
        verbose_name_plural = _("comments")
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return _("%(author)s on image #%(id)s") % {"author": self.author_label, "id": self.image_id}


class Activity(models.Model):
    """The append-only log of a campaign and its images: one row per event."""

    class Verb(models.TextChoices):
        GENERATED = "generated", _("requested images")
        READY = "ready", _("image ready")
        FAILED = "failed", _("image failed")
        APPROVED = "approved", _("approved")
        REJECTED = "rejected", _("rejected")
        REVOKED = "revoked", _("revoked the review")
        COMMENTED = "commented", _("commented")
        SUBMITTED = "submitted", _("submitted for review")
        BACK_IN_REVIEW = "back_in_review", _("sent back to review by a revoke")
        SIGNED_OFF = "signed_off", _("signed off")
        CHANGES_REQUESTED = "changes_requested", _("requested changes")
        ARCHIVED = "archived", _("archived")
        REOPENED = "reopened", _("reopened")
        POLICY_CHANGED = "policy_changed", _("changed the review policy")
        EXPORTED = "exported", _("exported the approved images")
        SHARED = "shared", _("invited an outside reviewer")
        SHARE_REVOKED = "share_revoked", _("revoked an outside reviewer's link")
        CANCELLED = "cancelled", _("cancelled an unfinished image")
        ALT_TEXT_CHANGED = "alt_text_changed", _("edited the alt text")

    campaign = models.ForeignKey(
        Campaign, verbose_name=_("campaign"), on_delete=models.CASCADE, related_name="activity"
    )
    image = models.ForeignKey(
        GeneratedImage,
        verbose_name=_("image"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="activity",
    )
    verb = models.CharField(_("what"), max_length=30, choices=Verb.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("who"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    #: Who, as text: a username, an outside reviewer's address, or "system" for the workers.
    actor_label = models.CharField(_("who"), max_length=254)
    note = models.TextField(_("note"), blank=True)
    created_at = models.DateTimeField(_("when"), default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("activity")
        verbose_name_plural = _("activity")
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["campaign", "-created_at"], name="imagen_activity_campaign_idx"),
            models.Index(fields=["image", "-created_at"], name="imagen_activity_image_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.actor_label} {self.get_verb_display()}"


class Export(models.Model):
    """A zip of a campaign's approved originals with a manifest, built by a job."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        READY = "ready", _("Ready")
        FAILED = "failed", _("Failed")

    campaign = models.ForeignKey(
        Campaign, verbose_name=_("campaign"), on_delete=models.CASCADE, related_name="exports"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("requested by"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.QUEUED
    )
    #: The storage name of the zip once built (in the originals' storage).
    file_name = models.CharField(_("file"), max_length=300, blank=True)
    #: The ids of the images the zip holds: a revoke of any of them makes it stale.
    image_ids = models.JSONField(_("images"), default=list, blank=True)
    stale = models.BooleanField(
        _("stale"), default=False, help_text=_("An image in it was revoked since.")
    )
    bytes = models.PositiveBigIntegerField(_("size in bytes"), null=True, blank=True)
    error_message = models.TextField(_("error"), blank=True)
    created_at = models.DateTimeField(_("requested"), default=timezone.now)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)

    class Meta:
        verbose_name = _("export")
        verbose_name_plural = _("exports")
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return _("Export #%(id)s of %(campaign)s") % {"id": self.pk, "campaign": self.campaign}


class ShareLink(models.Model):
    """An outside reviewer's access to one campaign, by a signed and expiring link."""

    campaign = models.ForeignKey(
        Campaign, verbose_name=_("campaign"), on_delete=models.CASCADE, related_name="share_links"
    )
    email = models.EmailField(_("reviewer's address"))
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("invited by"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires"))
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)

    class Meta:
        verbose_name = _("outside reviewer link")
        verbose_name_plural = _("outside reviewer links")
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return _("%(email)s on %(campaign)s") % {"email": self.email, "campaign": self.campaign}

    @property
    def active(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()


class StoredFile(models.Model):
    """The name of a file the pipeline is about to write, recorded (and committed) before
    the write, so a run that dies part-way leaves a record of what it may have left behind.

    A record lives only while its file has no owner: the run that stores an image adopts
    its files (deletes their records in the transaction that gives the image its file
    names); a run that fails or loses a race deletes its files and then their records.
    What is left is found by the sweep (:mod:`imagen_assets.orphans`), which deletes a
    file no image owns once its record is older than ``ORPHAN_GRACE``, or sooner once the
    RQ job that wrote it (``job_id``) is over. Exports are never recorded, so never swept.
    """

    class Kind(models.TextChoices):
        ORIGINAL = "original", _("Original")
        THUMBNAIL = "thumbnail", _("Thumbnail")

    name = models.CharField(_("file name"), max_length=300, unique=True)
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    #: The image the file was written for (no foreign key: the record must outlive a
    #: deleted image, whose run may still be writing).
    image_id = models.PositiveBigIntegerField(_("image"), null=True, blank=True)
    created_at = models.DateTimeField(_("recorded"), default=timezone.now, db_index=True)
    #: The RQ job whose run writes the file; blank when no RQ job does (a management
    #: command, a web request). Once that job is over the sweep need not wait for the grace.
    job_id = models.CharField(_("job"), max_length=200, blank=True, default="")

    class Meta:
        verbose_name = _("stored file record")
        verbose_name_plural = _("stored file records")
        ordering = ["pk"]

    def __str__(self) -> str:
        return self.name
