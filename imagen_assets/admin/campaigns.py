"""The campaign admin: the list with counts and spend, the page with its summary and gallery,
and the "Generate images" page (an action on the list, a button on a campaign's page)."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, cast

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    JsonResponse,
)
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from imagen_assets import again, quotas, review, services
from imagen_assets.activity import Actor
from imagen_assets.admin.base import (
    ImagenMedia,
    ProviderAlertsMixin,
    images_changelist_url,
    warn_about_providers,
)
from imagen_assets.admin.batches import CampaignBatchMixin
from imagen_assets.admin.exports import CampaignExportsMixin
from imagen_assets.admin.progress import provider_queues, recent_requests, summary_counts
from imagen_assets.admin.spend import spend_section
from imagen_assets.forms import CampaignAdminForm, GenerateImagesForm, usable_providers
from imagen_assets.models import Campaign, CampaignQuerySet, GeneratedImage
from imagen_assets.status import CampaignStatus
from imagen_assets.templatetags.imagen_admin import (
    link,
    money,
    render_fragment,
    review_badge,
    status_badge,
    thumbnail_box,
    unit_price,
)

if TYPE_CHECKING:
    # django-stubs makes ModelAdmin generic in its model; Django's own class cannot be
    # subscripted at run time.
    CampaignModelAdmin = admin.ModelAdmin[Campaign]
else:
    CampaignModelAdmin = admin.ModelAdmin

GALLERY_SIZE = 12

# -- workflow (wf-screen) --------------------------------------------------------------------
#: The review policy's fields: saved only through review.set_policy.
POLICY_FIELDS: list[Any] = ["required_approvals", "reviewer_group", "allow_self_approval"]
#: The newest activity rows shown on a campaign's page.
TIMELINE_SIZE = 50
#: What each campaign step says once done.
STEP_DONE = {
    "submit": _("%(campaign)s submitted for review; its reviewers are told."),
    "sign_off": _("%(campaign)s signed off: its approved images are ready for use."),
    "request_changes": _("Changes requested on %(campaign)s."),
    "archive": _("%(campaign)s archived."),
    "reopen": _("%(campaign)s reopened as a draft."),
}
# -- end workflow ----------------------------------------------------------------------------


def _int(value: str) -> int:
    """A positive id from a query string; 0 (no row) for anything else."""
    return int(value) if value.isdigit() else 0


class AnnotatedCampaign(Protocol):
    """A campaign as CampaignAdmin.get_queryset returns it, annotated by ``with_stats()``."""

    pk: Any
    budget: Decimal | None
    n_images: int
    n_ready: int
    n_approved: int
    n_pending: int
    n_open: int
    n_failed: int
    n_withheld: int
    n_cancelled: int
    committed: Decimal


class CampaignAdmin(
    ProviderAlertsMixin, CampaignBatchMixin, CampaignExportsMixin, CampaignModelAdmin
):
    """Campaigns: counts and spend in the list, summary and gallery on the page, and the
    page that asks for images at a price shown first."""

    form = CampaignAdminForm
    list_display = [
        "name",
        "status_column",
        "image_total",
        "image_ready",
        "image_approved",
        "image_failed",
        "image_withheld",
        "spend",
        "created_at",
    ]
    list_filter = ["status"]
    search_fields = ["name", "slug", "brief"]
    prepopulated_fields = {"slug": ["name"]}
    actions = ["generate_images"]
    view_on_site = False
    readonly_fields = ["summary", "gallery", "spend_report"]
    change_form_template = "imagen_assets/admin/campaign_change_form.html"
    generate_template = "imagen_assets/admin/generate_images.html"
    Media = ImagenMedia

    fieldsets = [
        (None, {"fields": ["name", "slug"]}),
        (_("Brief"), {"fields": ["brief", "brand", "brand_prompt"]}),
        (
            _("Defaults for new images"),
            {"fields": ["default_provider", "default_aspect_ratio", "default_negative_prompt"]},
        ),
        (_("Budget"), {"fields": ["budget"]}),
    ]
    # On a campaign's page only: a new campaign starts with the default policy (one
    # approval, anyone who may approve, four eyes).
    policy_fieldsets = [
        (
            _("Review policy"),
            {
                "fields": POLICY_FIELDS,
                "description": _(
                    "Who reviews this campaign's images and how many must approve each. "
                    "Changed only with the review policy permission, and not while the "
                    "campaign is in review."
                ),
            },
        ),
    ]
    summary_fieldsets = [
        (_("Spend and images"), {"fields": ["summary", "gallery"]}),
    ]

    #: The spend report (imagen_assets.admin.spend), below the summary.
    spend_fieldsets = [
        (_("Spend by day, provider and person"), {"fields": ["spend_report"]}),
    ]

    def get_fieldsets(self, request: HttpRequest, obj: Campaign | None = None) -> list[Any]:
        if obj is None:
            return self.fieldsets
        return [
            *self.summary_fieldsets,
            *self.spend_fieldsets,
            *self.fieldsets,
            *self.policy_fieldsets,
        ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Campaign]:
        queryset = cast(CampaignQuerySet, super().get_queryset(request)).with_stats()
        # The brand kit: the generate page reads it for every selected campaign.
        return queryset.select_related("brand")

    def save_model(self, request: HttpRequest, obj: Campaign, form: Any, change: bool) -> None:
        if not change and obj.created_by_id is None:
            obj.created_by_id = request.user.pk
        # The policy is the review module's to change (its rules, its activity row): the
        # form's values go through review.set_policy, never through this plain save.
        policy = {
            name: form.cleaned_data[name] for name in POLICY_FIELDS if name in form.changed_data
        }
        if not policy:
            super().save_model(request, obj, form, change)
            return
        saved = Campaign.objects.get(pk=obj.pk)
        obj.required_approvals = saved.required_approvals
        obj.reviewer_group_id = saved.reviewer_group_id
        obj.allow_self_approval = saved.allow_self_approval
        super().save_model(request, obj, form, change)
        try:
            review.set_policy(obj.pk, Actor.of(request.user), **policy)
        except review.ReviewError as exc:
            message = gettext("The review policy was not changed: %(reason)s")
            self.message_user(request, message % {"reason": exc}, messages.ERROR)
        else:
            obj.refresh_from_db(fields=POLICY_FIELDS)

    # -- workflow (wf-screen): the policy, the status, the steps, the timeline ------------

    def may_change_policy(self, request: HttpRequest, obj: Campaign | None) -> bool:
        """Whether the policy fields are editable: the permission, and not in review."""
        if not request.user.has_perm(review.PERM_POLICY):
            return False
        return obj is not None and obj.status != CampaignStatus.IN_REVIEW

    def get_readonly_fields(self, request: HttpRequest, obj: Campaign | None = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))
        if not self.may_change_policy(request, obj):
            fields += POLICY_FIELDS
        return fields

    @admin.display(description=_("status"), ordering="status")
    def status_column(self, obj: Campaign) -> str:
        return render_fragment("campaign_status_badge.html", {"campaign": obj})

    def workflow_context(self, request: HttpRequest, obj: Campaign) -> dict[str, Any]:
        """The campaign page's review panel (status, steps allowed now) and timeline."""
        rows = obj.activity.order_by("-created_at", "-pk")
        timeline = list(rows[: TIMELINE_SIZE + 1])
        pending = obj.images.pending_review().count()
        return {
            "workflow_url": reverse("admin:imagen_assets_campaign_workflow", args=[obj.pk]),
            "workflow_steps": review.available_steps(obj, Actor.of(request.user)),
            "workflow_badge": render_fragment("campaign_status_badge.html", {"campaign": obj}),
            "workflow_pending": pending,
            "review_screen_url": reverse("admin:imagen_assets_generatedimage_review")
            + f"?campaign={obj.pk}",
            "timeline": timeline[:TIMELINE_SIZE],
            "timeline_more": rows.count() - TIMELINE_SIZE if len(timeline) > TIMELINE_SIZE else 0,
        }

    def workflow_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """One campaign step from the page's review panel (POST ``step`` and ``note``),
        through :mod:`imagen_assets.review`; says what happened, or why it was refused."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        campaign = self.get_object(request, unquote(object_id))
        if campaign is None:
            raise Http404(gettext("No campaign with this id."))
        actor = Actor.of(request.user)
        step = request.POST.get("step", "")
        note = request.POST.get("note", "")
        steps: dict[str, Any] = {
            "submit": lambda: review.submit(campaign.pk, actor),
            "sign_off": lambda: review.sign_off(campaign.pk, actor, note=note),
            "request_changes": lambda: review.request_changes(campaign.pk, actor, note=note),
            "archive": lambda: review.archive(campaign.pk, actor, note=note),
            "reopen": lambda: review.reopen(campaign.pk, actor, note=note),
        }
        if step not in steps:
            self.message_user(request, gettext("Nothing was done: unknown step."), messages.ERROR)
        else:
            try:
                steps[step]()
            except review.ReviewError as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                done = STEP_DONE[step] % {"campaign": campaign}
                self.message_user(request, done, messages.SUCCESS)
        return redirect(reverse("admin:imagen_assets_campaign_change", args=[campaign.pk]))

    # -- end workflow ------------------------------------------------------------------------

    # -- changelist columns ------------------------------------------------------------------

    @admin.display(description=_("images"), ordering="n_images")
    def image_total(self, obj: AnnotatedCampaign) -> str:
        # str(): a template would localize the count (1,234); this cell never did.
        return link(images_changelist_url(campaign__id__exact=obj.pk), str(obj.n_images))

    @admin.display(description=_("ready"), ordering="n_ready")
    def image_ready(self, obj: AnnotatedCampaign) -> int:
        return obj.n_ready

    @admin.display(description=_("approved"), ordering="n_approved")
    def image_approved(self, obj: AnnotatedCampaign) -> int:
        return obj.n_approved

    @admin.display(description=_("failed"), ordering="n_failed")
    def image_failed(self, obj: AnnotatedCampaign) -> str:
        # Failed only: withheld and cancelled images are their own columns' and counts'.
        url = images_changelist_url(campaign__id__exact=obj.pk, status__exact="failed")
        return render_fragment("failed_count.html", {"count": obj.n_failed, "url": url})

    @admin.display(description=_("withheld"), ordering="n_withheld")
    def image_withheld(self, obj: AnnotatedCampaign) -> str:
        url = images_changelist_url(campaign__id__exact=obj.pk, status__exact="filtered")
        return render_fragment("withheld_count.html", {"count": obj.n_withheld, "url": url})

    @admin.display(description=_("spend"), ordering="committed")
    def spend(self, obj: AnnotatedCampaign) -> str:
        spend = services.Spend(committed=obj.committed, budget=obj.budget)
        return render_fragment("spend_cell.html", {"spend": spend})

    # -- change page -------------------------------------------------------------------------

    @admin.display(description=_("summary"))
    def summary(self, obj: Campaign) -> str:
        # Refreshes itself while anything is in progress (admin.js, summary_view).
        return render_to_string(
            "imagen_assets/admin/campaign_summary_live.html",
            {
                "summary": self.summary_html(obj),
                "summary_url": reverse("admin:imagen_assets_campaign_summary", args=[obj.pk]),
            },
        )

    def summary_html(self, obj: Campaign) -> str:
        """Spend, counts (each outcome apart) and the newest requests' progress."""
        stats = cast(AnnotatedCampaign, Campaign.objects.with_stats().get(pk=obj.pk))
        spend = services.Spend(committed=stats.committed, budget=obj.budget)
        requests = recent_requests(obj.pk)
        context: dict[str, Any] = {
            "campaign": obj,
            "committed": money(spend.committed),
            "budget": money(spend.budget) if spend.budget is not None else None,
            "left": money(spend.left) if spend.left is not None else None,
            "percent": spend.percent,
            "over": spend.over,
            "counts": summary_counts(obj.pk, stats),
            "in_progress": stats.n_open > 0 or any(not row.finished for row in requests),
            "requests": requests,
            "provider_queues": provider_queues(obj.pk) if stats.n_open else [],
        }
        return render_to_string("imagen_assets/admin/campaign_summary.html", context)

    def summary_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The summary alone (GET), for the page to refresh itself while images are made."""
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET"])
        campaign = self.get_object(request, unquote(object_id))
        if campaign is None or not self.has_view_or_change_permission(request, campaign):
            raise Http404(gettext("No campaign with this id."))
        response = HttpResponse(self.summary_html(campaign))
        response["Cache-Control"] = "no-store"
        return response

    @admin.display(description=_("spend"))
    def spend_report(self, obj: Campaign) -> str:
        return spend_section(obj)

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
            context["generate_batch_url"] = reverse(  # CampaignBatchMixin's page
                "admin:imagen_assets_campaign_generate_batch", args=[obj.pk]
            )
        if obj is not None:
            context.update(self.workflow_context(request, obj))
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
            path(
                "<path:object_id>/summary/",
                self.admin_site.admin_view(self.summary_view),
                name="{}_{}_summary".format(*info),
            ),
            path(
                "prompt-preview/",
                self.admin_site.admin_view(self.prompt_preview_view),
                name="{}_{}_prompt_preview".format(*info),
            ),
            path(
                "<path:object_id>/workflow/",
                self.admin_site.admin_view(self.workflow_view),
                name="{}_{}_workflow".format(*info),
            ),
            *super().get_urls(),
        ]

    @admin.action(permissions=["generate"], description=_("Generate images…"))
    def generate_images(
        self, request: HttpRequest, queryset: QuerySet[Campaign]
    ) -> HttpResponse | None:
        return self.generate_page(request, list(queryset), from_action=True)

    def generate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The same page as the action, for one campaign (the change page's button).

        ``?again=<image id>&mode=retry|more|other[&provider=<alias>]`` opens it prefilled
        from that image of the campaign ("Generate again"); the new request records where
        it came from."""
        if not self.has_generate_permission(request):
            raise PermissionDenied
        campaign = self.get_object(request, unquote(object_id))
        if campaign is None:
            raise Http404(gettext("No campaign with this id."))
        if request.method not in ("GET", "HEAD", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        params = request.POST if request.method == "POST" else request.GET
        prefill = None
        if params.get("again"):
            image = (
                GeneratedImage.objects.filter(campaign=campaign, pk=_int(params["again"]))
                .select_related("task__request", "campaign")
                .first()
            )
            if image is None:
                raise Http404(gettext("No image with this id in this campaign."))
            try:
                prefill = again.prefill(
                    image,
                    params.get("mode", ""),
                    provider=request.GET.get("provider") or None,
                    usable=usable_providers(),
                )
            except again.AgainError as exc:
                self.message_user(request, str(exc), messages.ERROR)
                return redirect(
                    reverse("admin:imagen_assets_generatedimage_change", args=[image.pk])
                )
        return self.generate_page(request, [campaign], from_action=False, prefill=prefill)

    def prompt_preview_view(self, request: HttpRequest) -> HttpResponse:
        """The generate page's live preview: POST the form's fields and ``preview_campaign``
        (one or more ids); returns each campaign's final prompt exactly as the form would
        send it, or why it would be refused (``{"previews": [{"campaign", "name", "prompt",
        "error"}]}``)."""
        if not self.has_generate_permission(request):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        ids = [int(pk) for pk in request.POST.getlist("preview_campaign") if pk.isdigit()]
        # The campaigns this admin shows this user (a host may narrow get_queryset), no other.
        found = self.get_queryset(request).select_related("brand").in_bulk(ids)
        campaigns = [found[pk] for pk in dict.fromkeys(ids) if pk in found]
        if not campaigns:
            raise Http404(gettext("No campaign with this id."))
        form = GenerateImagesForm(request.POST, campaigns=campaigns)
        form.is_valid()
        return JsonResponse({"previews": [preview.as_json() for preview in form.previews]})

    def generate_page(
        self,
        request: HttpRequest,
        campaigns: list[Campaign],
        *,
        from_action: bool,
        prefill: again.Prefill | None = None,
    ) -> HttpResponse:
        """Show the generate form with its price; on a valid submit, queue the images.

        Every selected campaign gets its images or none does: the requests run in one
        transaction, so a budget refused for the third campaign leaves the first two as
        they were, and no job is queued before it commits.
        """
        submitted = request.method == "POST" and "imagen_generate" in request.POST
        form = GenerateImagesForm(
            request.POST if submitted else None,
            campaigns=campaigns,
            initial=prefill.initial if prefill is not None else None,
        )
        origin: dict[str, Any] = {}
        if prefill is not None:
            origin = {"origin": prefill.origin, "source_image": prefill.image}
        if submitted and form.is_valid():
            queued: list[tuple[Campaign, int]] = []
            try:
                with transaction.atomic():
                    for campaign in campaigns:
                        tasks = services.request_images(
                            campaign=campaign,
                            user=request.user,
                            **form.request_kwargs(),
                            **origin,
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
        warn_about_providers(request)
        return TemplateResponse(
            request,
            self.generate_template,
            {
                **self.generate_context(request, form, campaigns, from_action=from_action),
                "again": prefill,
            },
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
            "price_per_image": unit_price(provider.price_per_image) if provider else "—",
            "provider_name": provider.display_name if provider else "",
            "cancel_url": cancel_url,
            "previews": getattr(form, "previews", None) or [],
            # Before anything is typed: the words each campaign adds to any prompt.
            "added_words": [(campaign, campaign.build_prompt("")) for campaign in campaigns],
            "preview_url": reverse("admin:imagen_assets_campaign_prompt_preview"),
            "quota_note": quotas.summary(request.user.pk),
            "media": self.media + form.media,
        }
