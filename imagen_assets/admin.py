"""The admin: a thin layer over :mod:`imagen_assets.services`.

Actions and buttons call services and report with ``message_user``; nothing here talks to a
provider. Asking for images (which costs money) goes through a page that shows the price
first. Every changelist runs a fixed number of queries whatever the number of rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any, cast

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import (
    QuerySet,
)
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext, ngettext, ngettext_lazy
from django.utils.translation import gettext_lazy as _

from imagen_assets import services
from imagen_assets.forms import (
    ApproveForm,
    CampaignAdminForm,
    GenerateImagesForm,
    RejectForm,
    provider_display_name,
)
from imagen_assets.models import (
    Campaign,
    CampaignQuerySet,
    GeneratedImage,
    GenerationTask,
    WebhookEvent,
)
from imagen_assets.providers import TaskStatus, provider_aliases
from imagen_assets.services import Decision
from imagen_assets.templatetags.imagen_admin import (
    error_preview,
    link,
    money,
    pixel_size,
    pretty_json,
    render_fragment,
    review_badge,
    stacked_datetime,
    status_badge,
    thumbnail_box,
)

OPEN_TASK_STATUSES = [status.value for status in TaskStatus if not status.terminal]
GALLERY_SIZE = 12


class ImagenMedia:
    css = {"all": ["imagen_assets/admin.css"]}
    js = ["imagen_assets/admin.js"]


# -- small helpers shared by the admins ----------------------------------------------------------


def image_error(image: GeneratedImage) -> str:
    """The reason an image failed, in the provider's (already readable) words."""
    return image.error_message or image.task.error_message


def admin_link(obj: Any, label: Any = None) -> str:
    if obj is None:
        return "—"
    opts = obj._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    return link(url, label if label is not None else obj)


def images_changelist_url(**filters: Any) -> str:
    query = "&".join(f"{key}={value}" for key, value in filters.items())
    url = reverse("admin:imagen_assets_generatedimage_changelist")
    return f"{url}?{query}" if query else url


def fieldset_fields(fieldsets: Sequence[tuple[Any, Any]]) -> list[str]:
    """Every field named in ``fieldsets``: support pages show them all read-only."""
    return [name for _title, options in fieldsets for name in options["fields"]]


class ReadOnlyAdminMixin:
    """Support views: rows are written by jobs, never by hand; only superusers may delete."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_active and request.user.is_superuser


# -- campaigns -----------------------------------------------------------------------------------

# A campaign row of the changelist, carrying the annotations of CampaignAdmin.get_queryset
# (n_images, n_ready, n_approved, n_failed, committed).
AnnotatedCampaign = Any


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    form = CampaignAdminForm
    list_display = [
        "name",
        "image_total",
        "image_ready",
        "image_approved",
        "image_failed",
        "spend",
        "created_at",
    ]
    search_fields = ["name", "slug", "brief"]
    prepopulated_fields = {"slug": ["name"]}
    actions = ["generate_images"]
    view_on_site = False
    readonly_fields = ["summary", "gallery"]
    change_form_template = "imagen_assets/admin/campaign_change_form.html"
    generate_template = "imagen_assets/admin/generate_images.html"
    Media = ImagenMedia

    fieldsets = [
        (None, {"fields": ["name", "slug"]}),
        (_("Brief"), {"fields": ["brief", "brand_prompt"]}),
        (
            _("Defaults for new images"),
            {"fields": ["default_provider", "default_aspect_ratio", "default_negative_prompt"]},
        ),
        (_("Budget"), {"fields": ["budget"]}),
    ]
    summary_fieldsets = [
        (_("Spend and images"), {"fields": ["summary", "gallery"]}),
    ]

    def get_fieldsets(self, request: HttpRequest, obj: Campaign | None = None) -> list[Any]:
        if obj is None:
            return self.fieldsets
        return self.summary_fieldsets + self.fieldsets

    def get_queryset(self, request: HttpRequest) -> QuerySet[Campaign]:
        return cast(CampaignQuerySet, super().get_queryset(request)).with_stats()

    def save_model(self, request: HttpRequest, obj: Campaign, form: Any, change: bool) -> None:
        if not change and obj.created_by_id is None:
            obj.created_by_id = request.user.pk
        super().save_model(request, obj, form, change)

    # -- changelist columns ------------------------------------------------------------------

    @admin.display(description=_("images"), ordering="n_images")
    def image_total(self, obj: AnnotatedCampaign) -> str:
        # The count as str() wrote it: the link is HTML, which the admin does not localize.
        return link(images_changelist_url(campaign__id__exact=obj.pk), str(obj.n_images))

    @admin.display(description=_("ready"), ordering="n_ready")
    def image_ready(self, obj: AnnotatedCampaign) -> int:
        return obj.n_ready

    @admin.display(description=_("approved"), ordering="n_approved")
    def image_approved(self, obj: AnnotatedCampaign) -> int:
        return obj.n_approved

    @admin.display(description=_("failed"), ordering="n_failed")
    def image_failed(self, obj: AnnotatedCampaign) -> str:
        return render_fragment("failed_count.html", {"count": obj.n_failed})

    @admin.display(description=_("spend"), ordering="committed")
    def spend(self, obj: AnnotatedCampaign) -> str:
        spend = services.Spend(committed=obj.committed, budget=obj.budget)
        return render_fragment("spend_cell.html", {"spend": spend})

    # -- change page -------------------------------------------------------------------------

    @admin.display(description=_("summary"))
    def summary(self, obj: Campaign) -> str:
        stats: AnnotatedCampaign = Campaign.objects.with_stats().get(pk=obj.pk)
        spend = services.Spend(committed=stats.committed, budget=obj.budget)
        counts = {
            "total": stats.n_images,
            "succeeded": stats.n_ready,
            "approved": stats.n_approved,
            "failed": stats.n_failed,
        }
        unfinished = obj.images.unfinished().count()
        context: dict[str, Any] = {
            "campaign": obj,
            "committed": money(spend.committed),
            "budget": money(spend.budget) if spend.budget is not None else None,
            "left": money(spend.left) if spend.left is not None else None,
            "percent": spend.percent,
            "over": spend.over,
            "counts": counts,
            "unfinished": unfinished,
            "images_url": images_changelist_url(campaign__id__exact=obj.pk),
        }
        return render_to_string("imagen_assets/admin/campaign_summary.html", context)

    @admin.display(description=_("latest images"))
    def gallery(self, obj: Campaign) -> str:
        images = list(
            obj.images.select_related("task").order_by("-created_at", "-pk")[:GALLERY_SIZE]
        )
        cards = [
            {
                "image": image,
                "url": reverse("admin:imagen_assets_generatedimage_change", args=[image.pk]),
                "thumbnail": thumbnail_box(image, "medium"),
                "status": status_badge(image),
                "review": review_badge(image),
            }
            for image in images
        ]
        return render_to_string(
            "imagen_assets/admin/campaign_gallery.html",
            {
                "cards": cards,
                "images_url": images_changelist_url(campaign__id__exact=obj.pk),
            },
        )

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Campaign | None = None,
    ) -> HttpResponse:
        if obj is not None and self.has_generate_permission(request):
            context["generate_url"] = reverse(
                "admin:imagen_assets_campaign_generate", args=[obj.pk]
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    # -- generate images ---------------------------------------------------------------------

    def has_generate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("imagen_assets.generate_images")

    def get_urls(self) -> list[Any]:
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/generate/",
                self.admin_site.admin_view(self.generate_view),
                name="{}_{}_generate".format(*info),
            ),
            *super().get_urls(),
        ]

    @admin.action(permissions=["generate"], description=_("Generate images…"))
    def generate_images(
        self, request: HttpRequest, queryset: QuerySet[Campaign]
    ) -> HttpResponse | None:
        return self.generate_page(request, list(queryset), from_action=True)

    def generate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The same page as the action, for one campaign (the change page's button)."""
        if not self.has_generate_permission(request):
            raise PermissionDenied
        campaign = self.get_object(request, unquote(object_id))
        if campaign is None:
            raise Http404(gettext("No campaign with this id."))
        if request.method not in ("GET", "HEAD", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        return self.generate_page(request, [campaign], from_action=False)

    def generate_page(
        self, request: HttpRequest, campaigns: list[Campaign], *, from_action: bool
    ) -> HttpResponse:
        """Show the generate form with its price; on a valid submit, queue the images.

        Every selected campaign gets its images or none does: the requests run in one
        transaction, so a budget refused for the third campaign leaves the first two as
        they were, and no job is queued before it commits.
        """
        submitted = request.method == "POST" and "imagen_generate" in request.POST
        form = GenerateImagesForm(request.POST if submitted else None, campaigns=campaigns)
        if submitted and form.is_valid():
            queued: list[tuple[Campaign, int]] = []
            try:
                with transaction.atomic():
                    for campaign in campaigns:
                        tasks = services.request_images(
                            campaign=campaign, user=request.user, **form.request_kwargs()
                        )
                        queued.append((campaign, sum(task.num_images for task in tasks)))
            except services.GenerationRequestError as exc:
                message = str(exc)
                if len(campaigns) > 1:
                    failed = campaigns[len(queued)]
                    message = f"{failed}: {message}"
                form.add_error(None, message)
            else:
                provider = form.providers[form.cleaned_data["provider"]].display_name
                sentences = [
                    ngettext(
                        "Queued %(count)d image for %(campaign)s on %(provider)s.",
                        "Queued %(count)d images for %(campaign)s on %(provider)s.",
                        count,
                    )
                    % {"count": count, "campaign": campaign, "provider": provider}
                    for campaign, count in queued
                ]
                sentences.append(gettext("They will appear here as they finish."))
                self.message_user(request, " ".join(sentences), messages.SUCCESS)
                if len(campaigns) == 1:
                    return redirect(images_changelist_url(campaign__id__exact=campaigns[0].pk))
                ids = ",".join(str(campaign.pk) for campaign in campaigns)
                return redirect(images_changelist_url(campaign__id__in=ids))
        return TemplateResponse(
            request,
            self.generate_template,
            self.generate_context(request, form, campaigns, from_action=from_action),
        )

    def generate_context(
        self,
        request: HttpRequest,
        form: GenerateImagesForm,
        campaigns: list[Campaign],
        *,
        from_action: bool,
    ) -> dict[str, Any]:
        provider = form.selected_provider
        count = form.selected_count
        per_campaign: Decimal | None = None
        if provider is not None and count is not None:
            try:
                per_campaign = services.estimate(provider.alias, count).total
            except services.GenerationRequestError:
                per_campaign = None
        rows = []
        for campaign in campaigns:
            # Annotated by get_queryset (with_stats), so no query per selected campaign.
            committed = getattr(campaign, "committed", None)
            if committed is None:
                committed = campaign.committed_spend()
            spend = services.Spend(committed=committed, budget=campaign.budget)
            rows.append(
                {
                    "campaign": campaign,
                    "spend": spend,
                    "committed": money(spend.committed),
                    "budget": money(spend.budget) if spend.budget is not None else None,
                    "left": spend.left,
                    "left_display": money(spend.left) if spend.left is not None else None,
                    "over": per_campaign is not None and not spend.allows(per_campaign),
                }
            )
        opts = self.opts
        if from_action:
            cancel_url = reverse("admin:imagen_assets_campaign_changelist")
        else:
            cancel_url = reverse("admin:imagen_assets_campaign_change", args=[campaigns[0].pk])
        return {
            **self.admin_site.each_context(request),
            "title": gettext("Generate images"),
            "subtitle": ", ".join(str(campaign) for campaign in campaigns),
            "opts": opts,
            "form": form,
            "campaigns": campaigns,
            "rows": rows,
            "from_action": from_action,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "action_name": "generate_images",
            "per_campaign": money(per_campaign) if per_campaign is not None else "—",
            "total": money(per_campaign * len(campaigns)) if per_campaign is not None else "—",
            "price_per_image": money(provider.price_per_image) if provider else "—",
            "provider_name": provider.display_name if provider else "",
            "cancel_url": cancel_url,
            "media": self.media + form.media,
        }


# -- generated images ----------------------------------------------------------------------------


# The form each decision is submitted with (a rejection needs its reason) and what the admin
# says once it is recorded, for one image and for a selection.
REVIEW_FORMS: dict[Decision, type[ApproveForm | RejectForm]] = {
    Decision.APPROVE: ApproveForm,
    Decision.REJECT: RejectForm,
}
REVIEWED_ONE = {
    Decision.APPROVE: _("Image #%(id)d approved."),
    Decision.REJECT: _("Image #%(id)d rejected."),
}
REVIEWED_MANY = {
    Decision.APPROVE: ngettext_lazy(
        "Approved %(count)d image.", "Approved %(count)d images.", "count"
    ),
    Decision.REJECT: ngettext_lazy(
        "Rejected %(count)d image.", "Rejected %(count)d images.", "count"
    ),
}


class ProviderFilter(admin.SimpleListFilter):
    """Filter by ``task__provider``, listing the configured providers by name.

    The choices come from settings, not from a ``SELECT DISTINCT`` over every task, so the
    filter costs no query however many images there are.
    """

    title = _("provider")
    parameter_name = "task__provider"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(alias, provider_display_name(alias)) for alias in provider_aliases()]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[GeneratedImage]
    ) -> QuerySet[GeneratedImage]:
        value = self.value()
        return queryset.filter(task__provider=value) if value else queryset


@admin.register(GeneratedImage)
class GeneratedImageAdmin(admin.ModelAdmin):
    list_display = [
        "thumbnail_column",
        "campaign",
        "status_column",
        "review_column",
        "provider",
        "size",
        "created",
    ]
    list_display_links = ["thumbnail_column"]
    list_filter = ["campaign", "status", "review_status", ProviderFilter]
    list_select_related = ["campaign", "task"]
    search_fields = ["task__prompt", "campaign__name"]
    ordering = ["-created_at", "-pk"]
    list_per_page = 50
    show_full_result_count = False
    actions = ["approve_selected", "reject_selected"]
    change_form_template = "imagen_assets/admin/image_change_form.html"
    reject_template = "imagen_assets/admin/reject_images.html"
    Media = ImagenMedia

    fieldsets = [
        (
            _("Image"),
            {
                "fields": [
                    "campaign",
                    "status_detail",
                    "size",
                    "bytes",
                    "content_type",
                    "sha256",
                    "nsfw",
                    "file_link",
                ]
            },
        ),
        (
            _("Review"),
            {"fields": ["review_status", "reviewed_by", "reviewed_at", "review_note"]},
        ),
        (
            _("How it was made"),
            {
                "fields": [
                    "provider",
                    "task_model",
                    "task_link",
                    "provider_task_id",
                    "seed",
                    "aspect_ratio",
                    "final_prompt",
                    "negative_prompt",
                    "created_at",
                    "completed_at",
                ]
            },
        ),
        (
            _("Reproduce"),
            {
                "fields": ["reproduction_json"],
                "description": _("Everything needed to ask the provider for this image again."),
            },
        ),
    ]
    readonly_fields = fieldset_fields(fieldsets)

    def get_queryset(self, request: HttpRequest) -> QuerySet[GeneratedImage]:
        return super().get_queryset(request).select_related("campaign", "task", "reviewed_by")

    # Generated images are made by jobs and reviewed through the buttons: never edited.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("imagen_assets.approve_generatedimage")

    def has_reject_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("imagen_assets.reject_generatedimage")

    # -- changelist columns ------------------------------------------------------------------

    @admin.display(description=_("image"))
    def thumbnail_column(self, obj: GeneratedImage) -> str:
        return thumbnail_box(obj)

    @admin.display(description=_("status"), ordering="status")
    def status_column(self, obj: GeneratedImage) -> str:
        return render_fragment("status_cell.html", {"image": obj, "error": image_error(obj)})

    @admin.display(description=_("review"), ordering="review_status")
    def review_column(self, obj: GeneratedImage) -> str:
        return review_badge(obj, short=True)

    @admin.display(description=_("provider"), ordering="task__provider")
    def provider(self, obj: GeneratedImage) -> str:
        return provider_display_name(obj.task.provider)

    @admin.display(description=_("created"), ordering="created_at")
    def created(self, obj: GeneratedImage) -> str:
        # Two short lines instead of "Nov. 21, 2026, 9:22 a.m." keep the table narrow.
        return stacked_datetime(obj.created_at)

    @admin.display(description=_("size"))
    def size(self, obj: GeneratedImage) -> str:
        if obj.width and obj.height:
            return pixel_size(obj.width, obj.height)
        return "—"

    # -- change page fields ------------------------------------------------------------------

    @admin.display(description=_("status"))
    def status_detail(self, obj: GeneratedImage) -> str:
        return render_fragment("status_detail.html", {"image": obj, "error": image_error(obj)})

    @admin.display(description=_("file"))
    def file_link(self, obj: GeneratedImage) -> str:
        if not obj.file:
            return "—"
        return link(obj.file.url, obj.file.name, new_tab=True)

    @admin.display(description=_("model"))
    def task_model(self, obj: GeneratedImage) -> str:
        return obj.task.model or "—"

    @admin.display(description=_("task"))
    def task_link(self, obj: GeneratedImage) -> str:
        return admin_link(obj.task)

    @admin.display(description=_("provider task id"))
    def provider_task_id(self, obj: GeneratedImage) -> str:
        return obj.task.provider_task_id or "—"

    @admin.display(description=_("seed"))
    def seed(self, obj: GeneratedImage) -> str:
        return "—" if obj.task.seed is None else str(obj.task.seed)

    @admin.display(description=_("aspect ratio"))
    def aspect_ratio(self, obj: GeneratedImage) -> str:
        return obj.task.aspect_ratio

    @admin.display(description=_("final prompt"))
    def final_prompt(self, obj: GeneratedImage) -> str:
        return render_fragment("prompt.html", {"prompt": obj.task.prompt})

    @admin.display(description=_("negative prompt"))
    def negative_prompt(self, obj: GeneratedImage) -> str:
        return obj.task.negative_prompt or "—"

    @admin.display(description=_("reproduce"))
    def reproduction_json(self, obj: GeneratedImage) -> str:
        task = obj.task
        return pretty_json(
            obj.reproduction(), hide=[task.callback_token, str(task.idempotency_key)]
        )

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: GeneratedImage | None = None,
    ) -> HttpResponse:
        if obj is not None:
            ready = obj.status == GeneratedImage.Status.SUCCEEDED
            context.update(
                {
                    "image": obj,
                    "image_error": image_error(obj),
                    "image_thumbnail": thumbnail_box(obj, "large"),
                    "image_status": status_badge(obj),
                    "image_review": review_badge(obj),
                    "can_approve": ready and self.has_approve_permission(request),
                    "can_reject": ready and self.has_reject_permission(request),
                    "approve_url": reverse(
                        "admin:imagen_assets_generatedimage_approve", args=[obj.pk]
                    ),
                    "reject_url": reverse(
                        "admin:imagen_assets_generatedimage_reject", args=[obj.pk]
                    ),
                    "approve_form": ApproveForm(auto_id="id_approve_%s"),
                    "reject_form": RejectForm(auto_id="id_reject_%s"),
                }
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    # -- review --------------------------------------------------------------------------------

    def get_urls(self) -> list[Any]:
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/approve/",
                self.admin_site.admin_view(self.approve_view),
                name="{}_{}_approve".format(*info),
            ),
            path(
                "<path:object_id>/reject/",
                self.admin_site.admin_view(self.reject_view),
                name="{}_{}_reject".format(*info),
            ),
            *super().get_urls(),
        ]

    def approve_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self.review_view(request, object_id, Decision.APPROVE)

    def reject_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self.review_view(request, object_id, Decision.REJECT)

    def has_review_permission(self, request: HttpRequest, decision: Decision) -> bool:
        if decision is Decision.APPROVE:
            return self.has_approve_permission(request)
        return self.has_reject_permission(request)

    def review_view(self, request: HttpRequest, object_id: str, decision: Decision) -> HttpResponse:
        """Record ``decision`` on one image from its page (POST only), then go back to it."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_review_permission(request, decision):
            raise PermissionDenied
        image = self.get_object(request, unquote(object_id))
        if image is None:
            raise Http404(gettext("No image with this id."))
        back = reverse("admin:imagen_assets_generatedimage_change", args=[image.pk])
        form = REVIEW_FORMS[decision](request.POST)
        if not form.is_valid():
            for errors in form.errors.values():
                for error in errors:
                    self.message_user(request, str(error), messages.ERROR)
            return redirect(back)
        try:
            services.review(image.pk, decision, user=request.user, note=form.cleaned_data["note"])
        except services.ReviewError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(request, REVIEWED_ONE[decision] % {"id": image.pk}, messages.SUCCESS)
        return redirect(back)

    def report_review(
        self,
        request: HttpRequest,
        decision: Decision,
        done: list[GeneratedImage],
        errors: list[str],
    ) -> None:
        """Say how many images got ``decision`` and why the others were skipped."""
        if done:
            message = REVIEWED_MANY[decision] % {"count": len(done)}
            self.message_user(request, message, messages.SUCCESS)
        if errors:
            shown = " ".join(errors[:5])
            more = len(errors) - 5
            if more > 0:
                shown += " " + gettext("(and %(count)d more)") % {"count": more}
            self.message_user(
                request,
                ngettext(
                    "Skipped %(count)d image: %(reasons)s",
                    "Skipped %(count)d images: %(reasons)s",
                    len(errors),
                )
                % {"count": len(errors), "reasons": shown},
                messages.WARNING,
            )

    @admin.action(permissions=["approve"], description=_("Approve selected images"))
    def approve_selected(self, request: HttpRequest, queryset: QuerySet[GeneratedImage]) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        done, errors = services.review_many(ids, Decision.APPROVE, user=request.user)
        self.report_review(request, Decision.APPROVE, done, errors)

    @admin.action(permissions=["reject"], description=_("Reject selected images…"))
    def reject_selected(
        self, request: HttpRequest, queryset: QuerySet[GeneratedImage]
    ) -> HttpResponse | None:
        if "imagen_reject" in request.POST:
            form = RejectForm(request.POST)
            if form.is_valid():
                ids = list(queryset.values_list("pk", flat=True))
                done, errors = services.review_many(
                    ids, Decision.REJECT, user=request.user, note=form.cleaned_data["note"]
                )
                self.report_review(request, Decision.REJECT, done, errors)
                return None
        else:
            form = RejectForm()
        images = list(queryset.select_related("campaign", "task")[: self.list_per_page])
        total = queryset.count()
        return TemplateResponse(
            request,
            self.reject_template,
            {
                **self.admin_site.each_context(request),
                "title": gettext("Reject images"),
                "opts": self.opts,
                "form": form,
                "queryset": queryset,
                "selected_ids": list(queryset.values_list("pk", flat=True)),
                "cards": [
                    {
                        "image": image,
                        "thumbnail": thumbnail_box(image),
                        "status": status_badge(image),
                    }
                    for image in images
                ],
                "total": total,
                "hidden": max(total - len(images), 0),
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
                "media": self.media + form.media,
            },
        )


# -- support: tasks and webhook events -----------------------------------------------------------


@admin.register(GenerationTask)
class GenerationTaskAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "campaign",
        "provider",
        "model",
        "status",
        "progress",
        "num_images",
        "provider_task_id",
        "attempts",
        "polls",
        "estimated_cost_display",
        "cost_display",
        "error_preview",
        "created_at",
        "submitted_at",
        "completed_at",
    ]
    list_filter = ["provider", "status"]
    list_select_related = ["campaign"]
    search_fields = ["provider_task_id", "prompt"]
    ordering = ["-created_at", "-pk"]
    list_per_page = 50
    show_full_result_count = False
    Media = ImagenMedia
    # callback_token and idempotency_key are deliberately absent: they let anyone who
    # sees them forge a callback or replay a submit.
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "campaign",
                    "provider",
                    "model",
                    "status",
                    "progress",
                    "num_images",
                    "images_link",
                    "provider_task_id",
                    "requested_by",
                ]
            },
        ),
        (
            _("Request"),
            {"fields": ["prompt", "negative_prompt", "aspect_ratio", "seed", "request_json"]},
        ),
        (
            _("Outcome"),
            {
                "fields": [
                    "outputs_json",
                    "error_code",
                    "error_message",
                    "attempts",
                    "polls",
                    "estimated_cost_display",
                    "cost_display",
                ]
            },
        ),
        (_("Times"), {"fields": ["created_at", "submitted_at", "completed_at", "updated_at"]}),
    ]
    readonly_fields = fieldset_fields(fieldsets)

    @admin.display(description=_("estimated cost"), ordering="estimated_cost")
    def estimated_cost_display(self, obj: GenerationTask) -> str:
        return money(obj.estimated_cost)

    @admin.display(description=_("cost"), ordering="cost")
    def cost_display(self, obj: GenerationTask) -> str:
        return money(obj.cost) if obj.cost is not None else "—"

    @admin.display(description=_("error"))
    def error_preview(self, obj: GenerationTask) -> str:
        if not obj.error_message:
            return ""
        return error_preview(obj.error_message)

    @admin.display(description=_("request sent"))
    def request_json(self, obj: GenerationTask) -> str:
        return pretty_json(obj.request_body, hide=[obj.callback_token, str(obj.idempotency_key)])

    @admin.display(description=_("outputs"))
    def outputs_json(self, obj: GenerationTask) -> str:
        return pretty_json(obj.outputs, hide=[obj.callback_token, str(obj.idempotency_key)])

    @admin.display(description=_("images"))
    def images_link(self, obj: GenerationTask) -> str:
        return link(
            images_changelist_url(task__id__exact=obj.pk), gettext("See the images of this task")
        )


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "provider",
        "event_id",
        "provider_task_id",
        "task_column",
        "received_at",
        "processed_at",
        "outcome",
    ]
    list_filter = ["provider"]
    list_select_related = ["task"]
    search_fields = ["event_id", "provider_task_id"]
    ordering = ["-received_at"]
    list_per_page = 50
    show_full_result_count = False
    Media = ImagenMedia
    fields = readonly_fields = (
        "provider",
        "event_id",
        "provider_task_id",
        "task_column",
        "received_at",
        "processed_at",
        "outcome",
        "payload_json",
        "state_json",
    )

    @admin.display(description=_("task"), ordering="task")
    def task_column(self, obj: WebhookEvent) -> str:
        return admin_link(obj.task)

    @admin.display(description=_("payload"))
    def payload_json(self, obj: WebhookEvent) -> str:
        return pretty_json(obj.payload)

    @admin.display(description=_("reported state"))
    def state_json(self, obj: WebhookEvent) -> str:
        return pretty_json(obj.state) if obj.state is not None else "—"
