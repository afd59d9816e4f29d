"""The generated images admin: the list with thumbnails and status, an image's page, and
review (approve or reject, one image from its page or a selection from the list)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.templatetags.admin_urls import add_preserved_filters
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext, ngettext, ngettext_lazy
from django.utils.translation import gettext_lazy as _

from imagen_assets import breaker, files, review, services
from imagen_assets.activity import Actor
from imagen_assets.admin.again import AgainMixin
from imagen_assets.admin.base import (
    LIST_TEMPLATE,
    VIEW_VAR,
    ImagenMedia,
    ListPolishMixin,
    ProviderAlertsMixin,
    admin_link,
    fieldset_fields,
)
from imagen_assets.admin.progress import ready_label, request_progress
from imagen_assets.admin.review_screen import ReviewScreen
from imagen_assets.alt_text import MAX_LENGTH as ALT_TEXT_MAX_LENGTH
from imagen_assets.explain import Explanation, explain
from imagen_assets.forms import ApproveForm, RejectForm, provider_display_name
from imagen_assets.models import GeneratedImage, GenerationRequest, GenerationTask
from imagen_assets.providers import provider_aliases
from imagen_assets.status import Decision, ReviewStatus
from imagen_assets.templatetags.imagen_admin import (
    file_size,
    link,
    pixel_size,
    pretty_json,
    render_fragment,
    review_badge,
    stacked_datetime,
    status_badge,
    thumbnail_box,
)

if TYPE_CHECKING:
    # django-stubs makes ModelAdmin generic in its model; Django's own class cannot be
    # subscripted at run time.
    ImageModelAdmin = admin.ModelAdmin[GeneratedImage]
else:
    ImageModelAdmin = admin.ModelAdmin

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


#: The newest activity rows shown on an image's page.
TIMELINE_SIZE = 50


def explain_on_page(image: GeneratedImage) -> Explanation | None:
    """:func:`~imagen_assets.explain.explain` with the provider's health (one query): an
    open image whose provider is not answering reads "waiting", tried again by itself."""
    health = breaker.outage(image.task.provider) if image.is_open else None
    return explain(image, health=health)


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


class ReviewStatusFilter(admin.SimpleListFilter):
    """Filter by review status, "Pending review" meaning exactly what waits for a decision:
    ready images in an undecided round (``pending_review()``), never failed, withheld or
    cancelled ones, whatever a hand-edited row says."""

    title = _("review")
    parameter_name = "review_status__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return list(ReviewStatus.choices)

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[GeneratedImage]
    ) -> QuerySet[GeneratedImage]:
        value = self.value()
        if value == ReviewStatus.PENDING:
            return queryset.filter(
                status=GeneratedImage.Status.SUCCEEDED, review_status=ReviewStatus.PENDING
            )
        return queryset.filter(review_status=value) if value else queryset


class RequestFilter(admin.SimpleListFilter):
    """Filter by the request that made the images: the newest requests by name (one small
    query), and the one chosen even when it is older (a "request" link in the list)."""

    title = _("request")
    parameter_name = "task__request"
    #: How many of the newest requests the sidebar offers.
    NEWEST = 8

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        rows = list(
            GenerationRequest.objects.order_by("-created_at", "-pk").values_list("pk", "prompt")[
                : self.NEWEST
            ]
        )
        chosen = self.value()
        if chosen and chosen.isdigit() and int(chosen) not in {pk for pk, _prompt in rows}:
            rows += list(GenerationRequest.objects.filter(pk=chosen).values_list("pk", "prompt"))
        return [(str(pk), request_label(pk, prompt)) for pk, prompt in rows]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[GeneratedImage]
    ) -> QuerySet[GeneratedImage]:
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(task__request_id=int(value))
        return queryset


def request_label(pk: int, prompt: str) -> str:
    """ "Request #12: A red bicycle by the…", for a filter choice or a heading."""
    text = gettext("Request #%(id)d") % {"id": pk}
    prompt = " ".join(prompt.split())
    if prompt:
        text += ": " + (prompt[:40] + "…" if len(prompt) > 41 else prompt)
    return text


def number_in_requests(images: list[GeneratedImage]) -> None:
    """Set where each image stands in its request, for "#3 of 8" and "3 of 8 ready":
    ``n_before`` (images of the request's earlier tasks) and ``n_request_ready`` (its ready
    images). Two queries for a page's images, whatever the list's size: done on the page's
    rows after pagination, since as correlated subqueries in the list's query a database
    computes them for every filtered row before sorting (1.3 s at 100 000 images)."""
    request_ids = {image.task.request_id for image in images if image.task.request_id}
    if not request_ids:
        return
    sizes: dict[int, list[tuple[int, int]]] = {}
    for task_id, request_id, num_images in (
        GenerationTask.objects.filter(request_id__in=request_ids)
        .order_by()
        .values_list("pk", "request_id", "num_images")
    ):
        if request_id is not None:
            sizes.setdefault(request_id, []).append((task_id, num_images))
    ready = dict(
        GeneratedImage.objects.filter(
            task__request_id__in=request_ids, status=GeneratedImage.Status.SUCCEEDED
        )
        .order_by()
        .values("task__request_id")
        .annotate(n=Count("pk"))
        .values_list("task__request_id", "n")
    )
    for image in images:
        made_by = image.task.request_id
        if not made_by:
            continue
        image.n_before = sum(  # type: ignore[attr-defined]
            n for task_id, n in sizes.get(made_by, []) if task_id < image.task_id
        )
        image.n_request_ready = ready.get(made_by, 0)  # type: ignore[attr-defined]


def image_number(image: GeneratedImage) -> tuple[int, int]:
    """(n, of): the image's place in its request ("#3 of 8"), or in its task when the task
    was made before requests were kept."""
    task = image.task
    if task.request is not None and hasattr(image, "n_before"):
        total = task.request.count or task.num_images
        return image.n_before + image.index + 1, max(total, image.n_before + task.num_images)
    return image.index + 1, task.num_images


class GeneratedImageAdmin(AgainMixin, ListPolishMixin, ProviderAlertsMixin, ImageModelAdmin):
    """Generated images: never edited by hand, only looked at and reviewed."""

    list_display = [
        "thumbnail_column",
        "number_column",
        "prompt_column",
        "campaign_column",
        "request_column",
        "status_column",
        "review_column",
        "provider",
        "size",
        "created",
    ]
    list_display_links = ["thumbnail_column"]
    list_filter = ["campaign", "status", ReviewStatusFilter, ProviderFilter, RequestFilter]
    list_select_related = ["campaign", "task", "task__request"]
    change_list_template = LIST_TEMPLATE
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
                    "alt_text",
                    "status_detail",
                    "size",
                    "file_size_display",
                    "content_type",
                    "sha256",
                    "served_sha256",
                    "c2pa_display",
                    "nsfw_display",
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
        return (
            super()
            .get_queryset(request)
            .select_related("campaign", "task", "task__request", "reviewed_by")
        )

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)
        number_in_requests(list(changelist.result_list))
        return changelist

    # -- list or grid ------------------------------------------------------------------------

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        """The list, or with ``?view=grid`` the same rows (filters, search, page) as cards of
        large thumbnails, grouped under the request that made them."""
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if not context or "cl" not in context:
            return response
        cl = context["cl"]
        grid = request.GET.get(VIEW_VAR) == "grid"
        context["imagen_view_switch"] = [
            {
                "value": "list",
                "label": gettext("List"),
                "url": cl.get_query_string(remove=[VIEW_VAR]),
                "current": not grid,
            },
            {
                "value": "grid",
                "label": gettext("Grid"),
                "url": cl.get_query_string({VIEW_VAR: "grid"}),
                "current": grid,
            },
        ]
        if grid:
            context["imagen_grid"] = render_fragment(
                "image_grid.html",
                {
                    "groups": self.grid_groups(list(cl.result_list)),
                    "action_checkbox_name": ACTION_CHECKBOX_NAME,
                    "preserved_filters": self.get_preserved_filters(request),
                    "opts": self.opts,
                },
            )
        return response

    def grid_groups(self, images: list[GeneratedImage]) -> list[dict[str, Any]]:
        """Consecutive images of one request as a group with its heading ("Request #12: a red
        bicycle… · 3 of 8 ready"); images made before requests were kept group by task."""
        groups: list[dict[str, Any]] = []
        for image in images:
            task = image.task
            key = ("request", task.request_id) if task.request_id else ("task", task.pk)
            if not groups or groups[-1]["key"] != key:
                groups.append({"key": key, "heading": self.group_heading(image), "cards": []})
            number, total = image_number(image)
            groups[-1]["cards"].append(
                {
                    "image": image,
                    "thumbnail": thumbnail_box(image, "grid"),
                    "status": status_badge(image, short=True),
                    "review": review_badge(image, short=True),
                    "prompt": image.task.prompt_as_written(image.campaign),
                    "number": number,
                    "total": total,
                }
            )
        return groups

    @staticmethod
    def group_heading(image: GeneratedImage) -> dict[str, Any]:
        task = image.task
        if task.request_id is not None:
            _number, total = image_number(image)
            return {
                "label": gettext("Request #%(id)d") % {"id": task.request_id},
                "ready": ready_label(getattr(image, "n_request_ready", 0), total),
                "url": f"?task__request={task.request_id}&view=grid",
                "campaign": image.campaign,
            }
        return {
            "label": gettext("Task #%(id)d") % {"id": task.pk},
            "ready": "",
            "url": f"?task__id__exact={task.pk}&view=grid",
            "campaign": image.campaign,
        }

    def get_list_display(self, request: HttpRequest) -> Any:
        return self.again_list_display(request, list(super().get_list_display(request)))

    # Generated images are made by jobs and reviewed through the buttons: never edited.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Approved means frozen: revoke the approval first (docs/workflow.md).
        if obj is not None and obj.review_status == ReviewStatus.APPROVED:
            return False
        return super().has_delete_permission(request, obj)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        """What deleting ``objs`` takes with it; approved images are listed as protected,
        so the bulk delete shows them and deletes nothing."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        approved = [obj for obj in objs if obj.review_status == ReviewStatus.APPROVED]
        protected = [*protected, *(admin_link(obj) for obj in approved)]
        return deleted, counts, perms_needed, protected

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("imagen_assets.approve_generatedimage")

    def has_reject_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("imagen_assets.reject_generatedimage")

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(review.PERM_REVOKE)

    # -- changelist columns ------------------------------------------------------------------

    @admin.display(description=_("image"))
    def thumbnail_column(self, obj: GeneratedImage) -> str:
        return thumbnail_box(obj)

    @admin.display(description=_("no."))
    def number_column(self, obj: GeneratedImage) -> str:
        number, total = image_number(obj)
        return gettext("#%(number)d of %(total)d") % {"number": number, "total": total}

    @admin.display(description=_("prompt"))
    def prompt_column(self, obj: GeneratedImage) -> str:
        return render_fragment(
            "prompt_excerpt.html", {"prompt": obj.task.prompt_as_written(obj.campaign)}
        )

    @admin.display(description=_("campaign"), ordering="campaign__name")
    def campaign_column(self, obj: GeneratedImage) -> str:
        return admin_link(obj.campaign)

    @admin.display(description=_("request"), ordering="task__request")
    def request_column(self, obj: GeneratedImage) -> str:
        task = obj.task
        if task.request_id is None:
            return "—"
        _number, total = image_number(obj)
        return render_fragment(
            "request_cell.html",
            {
                "url": f"?task__request={task.request_id}",
                "label": gettext("Request #%(id)d") % {"id": task.request_id},
                "ready": ready_label(getattr(obj, "n_request_ready", 0), total),
            },
        )

    @admin.display(description=_("status"), ordering="status")
    def status_column(self, obj: GeneratedImage) -> str:
        return render_fragment("status_cell.html", {"image": obj, "explanation": explain(obj)})

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
        return render_fragment(
            "status_detail.html", {"image": obj, "explanation": explain_on_page(obj)}
        )

    @admin.display(description=_("file size"))
    def file_size_display(self, obj: GeneratedImage) -> str:
        return file_size(obj.bytes)

    @admin.display(description=_("flagged NSFW by provider"))
    def nsfw_display(self, obj: GeneratedImage) -> str:
        # Not flagged is the normal case: plain words, no red cross.
        if obj.nsfw:
            return render_fragment("flag.html", {"text": gettext("Yes: the provider flagged it")})
        return gettext("No")

    @admin.display(description=_("provider's file had C2PA credentials"))
    def c2pa_display(self, obj: GeneratedImage) -> str:
        return gettext("Yes") if obj.provider_c2pa else gettext("No")

    @admin.display(description=_("file"))
    def file_link(self, obj: GeneratedImage) -> str:
        if not obj.file:
            return "—"
        # Through the permission-checked view, never the storage's own URL.
        return link(files.original_url(obj), obj.file.name, new_tab=True)

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
            # Approve and reject are offered while the round is open (a revoke reopens it).
            ready = obj.review_status == ReviewStatus.PENDING and obj.is_reviewable
            context.update(
                {
                    "image": obj,
                    "image_explanation": explain_on_page(obj),
                    "image_request": request_progress(obj),
                    "image_thumbnail": thumbnail_box(obj, "large"),
                    "original_url": (
                        files.original_url(obj)
                        if obj.file and files.may_open_original(request.user, obj)
                        else None
                    ),
                    "image_status": status_badge(obj),
                    "image_review": review_badge(obj),
                    "can_approve": ready and self.has_approve_permission(request),
                    "can_reject": ready and self.has_reject_permission(request),
                    "approve_url": self.keep_filters(
                        request,
                        reverse("admin:imagen_assets_generatedimage_approve", args=[obj.pk]),
                    ),
                    "reject_url": self.keep_filters(
                        request, reverse("admin:imagen_assets_generatedimage_reject", args=[obj.pk])
                    ),
                    "approve_form": ApproveForm(auto_id="id_approve_%s"),
                    "reject_form": RejectForm(auto_id="id_reject_%s"),
                    **self.workflow_context(request, obj),
                    **self.again_context(request, obj),
                    **self.alt_text_context(request, obj),
                }
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    # -- workflow: the round's decisions, comments, revoke, timeline -----------------------

    def workflow_context(self, request: HttpRequest, image: GeneratedImage) -> dict[str, Any]:
        """The image page's review box, comment thread and timeline."""
        decided = image.review_status in (ReviewStatus.APPROVED, ReviewStatus.REJECTED)
        decisions = list(review.round_decisions(image).select_related("reviewer"))
        return {
            "round_decisions": decisions,
            "round_approvals": sum(row.decision == Decision.APPROVE for row in decisions),
            "required_approvals": image.campaign.required_approvals,
            "comments": list(image.comments.order_by("created_at", "pk")),
            "comment_url": self.keep_filters(
                request, reverse("admin:imagen_assets_generatedimage_comment", args=[image.pk])
            ),
            "can_revoke": decided and self.has_revoke_permission(request),
            "revoke_url": self.keep_filters(
                request, reverse("admin:imagen_assets_generatedimage_revoke", args=[image.pk])
            ),
            "timeline": list(image.activity.order_by("-created_at", "-pk")[:TIMELINE_SIZE]),
            "review_screen_url": self.keep_filters(
                request,
                reverse("admin:imagen_assets_generatedimage_review")
                + f"?campaign={image.campaign_id}",
            ),
        }

    def keep_filters(self, request: HttpRequest, url: str) -> str:
        """``url`` carrying the list's filters (``_changelist_filters``, Django's preserved
        filters), so a review from an image's page returns to the same filtered list."""
        context: dict[str, Any] = {
            "preserved_filters": self.get_preserved_filters(request),
            "opts": self.opts,
        }
        return str(add_preserved_filters(context, url))

    def image_page_url(self, request: HttpRequest, image: GeneratedImage) -> str:
        """The image's page, with the list's filters kept."""
        return self.keep_filters(
            request, reverse("admin:imagen_assets_generatedimage_change", args=[image.pk])
        )

    # -- alt text: editable on any image, approved ones too (it is not the image) ----------

    def alt_text_context(self, request: HttpRequest, image: GeneratedImage) -> dict[str, Any]:
        return {
            "can_edit_alt_text": services.may_edit_alt_text(request.user, image),
            "alt_text_url": reverse("admin:imagen_assets_generatedimage_alt_text", args=[image.pk]),
            "alt_text_max": ALT_TEXT_MAX_LENGTH,
        }

    def alt_text_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Replace the image's alt text (POST ``alt_text``), then go back to its page. Its
        review, and an approval, stay as they are."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        image = self.get_object(request, unquote(object_id))
        if image is None:
            raise Http404(gettext("No image with this id."))
        try:
            services.set_alt_text(image.pk, request.POST.get("alt_text", ""), user=request.user)
        except review.ReviewError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(request, gettext("Alt text saved."), messages.SUCCESS)
        return redirect(self.image_page_url(request, image))

    def comment_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Add a comment to the image's thread (POST only), then go back to its page."""
        return self.workflow_step(
            request,
            object_id,
            lambda image, note: review.comment(image.pk, Actor.of(request.user), note),
            gettext("Comment added."),
        )

    def revoke_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Revoke the image's review (POST only, a reason required): back to pending."""
        if not self.has_revoke_permission(request):
            raise PermissionDenied
        return self.workflow_step(
            request,
            object_id,
            lambda image, note: review.revoke(image.pk, Actor.of(request.user), note=note),
            gettext("Review revoked: the image waits for review again, in a new round."),
        )

    def workflow_step(
        self, request: HttpRequest, object_id: str, step: Any, done: str
    ) -> HttpResponse:
        """Run ``step(image, note)`` from a form on the image page and report it there:
        ``done`` on success, the refusal's reason otherwise (nothing changed then)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        image = self.get_object(request, unquote(object_id))
        if image is None:
            raise Http404(gettext("No image with this id."))
        try:
            step(image, request.POST.get("note", ""))
        except review.ReviewError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(request, done, messages.SUCCESS)
        return redirect(self.image_page_url(request, image))

    # -- review --------------------------------------------------------------------------------

    def get_urls(self) -> list[Any]:
        info = self.opts.app_label, self.opts.model_name
        return [
            *self.again_urls(),
            path(
                "review/",
                self.admin_site.admin_view(ReviewScreen(self).view),
                name="{}_{}_review".format(*info),
            ),
            path(
                "<path:object_id>/comment/",
                self.admin_site.admin_view(self.comment_view),
                name="{}_{}_comment".format(*info),
            ),
            path(
                "<path:object_id>/alt-text/",
                self.admin_site.admin_view(self.alt_text_view),
                name="{}_{}_alt_text".format(*info),
            ),
            path(
                "<path:object_id>/revoke/",
                self.admin_site.admin_view(self.revoke_view),
                name="{}_{}_revoke".format(*info),
            ),
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
        back = self.image_page_url(request, image)
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
