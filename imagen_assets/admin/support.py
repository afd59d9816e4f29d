"""The support admins: generation tasks, webhook events and providers' health, read-only, for
finding out what happened to an image. Secrets (callback token, idempotency key, API keys)
are never shown."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.urls import reverse
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from imagen_assets import breaker, capacity
from imagen_assets.admin.base import (
    LIST_TEMPLATE,
    ImagenMedia,
    ListPolishMixin,
    ProviderAlertsMixin,
    admin_link,
    fieldset_fields,
    images_changelist_url,
)
from imagen_assets.admin.progress import ready_label
from imagen_assets.models import (
    GeneratedImage,
    GenerationRequest,
    GenerationTask,
    ProviderHealth,
    WebhookEvent,
)
from imagen_assets.templatetags.imagen_admin import (
    error_preview,
    link,
    money,
    pretty_json,
    render_fragment,
)

if TYPE_CHECKING:
    # django-stubs makes ModelAdmin generic in its model; Django's own class cannot be
    # subscripted at run time.
    TaskModelAdmin = admin.ModelAdmin[GenerationTask]
    RequestModelAdmin = admin.ModelAdmin[GenerationRequest]
    WebhookEventModelAdmin = admin.ModelAdmin[WebhookEvent]
    HealthModelAdmin = admin.ModelAdmin[ProviderHealth]
else:
    TaskModelAdmin = RequestModelAdmin = WebhookEventModelAdmin = HealthModelAdmin = (
        admin.ModelAdmin
    )


class ReadOnlyAdminMixin:
    """Support views: rows are written by jobs, never by hand; only superusers may delete."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_active and request.user.is_superuser


def delivered_text(status: str, asked: int, ready: int) -> str:
    """A task's status as the images show it: a provider that "succeeded" without handing
    over every image reads "Finished: 0 of 1 image delivered" or "Delivered 3 of 4"."""
    if status != GenerationTask.Status.SUCCEEDED:
        return str(GenerationTask.Status(status).label)
    if ready == 0:
        return ngettext(
            "Finished: 0 of %(asked)d image delivered",
            "Finished: 0 of %(asked)d images delivered",
            asked,
        ) % {"asked": asked}
    return gettext("Delivered %(ready)d of %(asked)d") % {"ready": ready, "asked": asked}


def count_of(images: QuerySet[GeneratedImage], group: str) -> Subquery:
    """``COUNT(*)`` of ``images`` (filtered on an ``OuterRef``) as a correlated subquery: run
    for the rows of the page only, so a list costs the same with 100 or 100,000 images (a
    ``Count`` over a join would aggregate every image before the page is cut)."""
    counted = images.order_by().values(group).annotate(n=Count("pk")).values("n")
    return Subquery(counted, output_field=IntegerField())


def with_delivered(queryset: QuerySet[GenerationTask]) -> QuerySet[GenerationTask]:
    """Tasks annotated with ``n_delivered``, their images stored (ready), in the same query."""
    ready = GeneratedImage.objects.filter(
        task=OuterRef("pk"), status=GeneratedImage.Status.SUCCEEDED
    )
    return queryset.annotate(n_delivered=Coalesce(count_of(ready, "task"), Value(0)))


class GenerationTaskAdmin(ListPolishMixin, ProviderAlertsMixin, ReadOnlyAdminMixin, TaskModelAdmin):
    """Provider tasks: what was sent, what came back, what it cost."""

    change_form_template = "imagen_assets/admin/change_form.html"
    list_display = [
        "id",
        "campaign_column",
        "request_column",
        "provider_column",
        "model",
        "status_column",
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
    list_select_related = ["campaign", "request"]
    search_fields = ["provider_task_id", "prompt"]
    ordering = ["-created_at", "-pk"]
    list_per_page = 50
    show_full_result_count = False
    Media = ImagenMedia
    change_list_template = LIST_TEMPLATE
    # callback_token and idempotency_key are deliberately absent: they let anyone who
    # sees them forge a callback or replay a submit.
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "campaign",
                    "request_column",
                    "provider_column",
                    "model",
                    "status_column",
                    "progress",
                    "images_asked",
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

    def get_queryset(self, request: HttpRequest) -> QuerySet[GenerationTask]:
        return with_delivered(super().get_queryset(request))

    @admin.display(description=_("campaign"), ordering="campaign__name")
    def campaign_column(self, obj: GenerationTask) -> str:
        return admin_link(obj.campaign)

    @admin.display(description=_("request"), ordering="request")
    def request_column(self, obj: GenerationTask) -> str:
        return admin_link(obj.request) if obj.request_id else "—"

    @admin.display(description=_("provider"), ordering="provider")
    def provider_column(self, obj: GenerationTask) -> str:
        return breaker.display_name(obj.provider)

    @admin.display(description=_("status"), ordering="status")
    def status_column(self, obj: GenerationTask) -> str:
        return delivered_text(obj.status, obj.num_images, getattr(obj, "n_delivered", 0))

    @admin.display(description=_("images asked for"))
    def images_asked(self, obj: GenerationTask) -> int:
        return obj.num_images

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

    @admin.display(description=_("images delivered"))
    def images_link(self, obj: GenerationTask) -> str:
        delivered = gettext("%(ready)d of %(asked)d") % {
            "ready": getattr(obj, "n_delivered", 0),
            "asked": obj.num_images,
        }
        see = link(
            images_changelist_url(task__id__exact=obj.pk), gettext("See the images of this task")
        )
        return render_fragment("delivered.html", {"delivered": delivered, "link": see})


class GenerationRequestAdmin(ListPolishMixin, ReadOnlyAdminMixin, RequestModelAdmin):
    """What marketers asked for, each with its images: "3 of 8 ready" and a link to them."""

    change_form_template = "imagen_assets/admin/change_form.html"
    list_display = [
        "request_column",
        "campaign_column",
        "prompt_column",
        "origin",
        "ready_column",
        "requested_by",
        "created_at",
    ]
    list_filter = ["origin"]
    list_select_related = ["campaign", "requested_by"]
    search_fields = ["prompt", "campaign__name"]
    ordering = ["-created_at", "-pk"]
    list_per_page = 50
    show_full_result_count = False
    Media = ImagenMedia
    change_list_template = LIST_TEMPLATE
    fields = readonly_fields = (
        "campaign_column",
        "prompt",
        "origin",
        "ready_column",
        "source_image",
        "requested_by",
        "created_at",
        "tasks_link",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[GenerationRequest]:
        images = GeneratedImage.objects.filter(task__request=OuterRef("pk"))
        ready = images.filter(status=GeneratedImage.Status.SUCCEEDED)
        return (
            super()
            .get_queryset(request)
            .annotate(
                n_ready=Coalesce(count_of(ready, "task__request"), Value(0)),
                n_images=Coalesce(count_of(images, "task__request"), Value(0)),
            )
        )

    @admin.display(description=_("request"), ordering="pk")
    def request_column(self, obj: GenerationRequest) -> str:
        return str(obj)

    @admin.display(description=_("campaign"), ordering="campaign__name")
    def campaign_column(self, obj: GenerationRequest) -> str:
        return admin_link(obj.campaign)

    @admin.display(description=_("prompt"))
    def prompt_column(self, obj: GenerationRequest) -> str:
        return render_fragment("prompt_excerpt.html", {"prompt": obj.prompt})

    @admin.display(description=_("images"))
    def ready_column(self, obj: GenerationRequest) -> str:
        total = max(obj.count, getattr(obj, "n_images", 0))
        ready = ready_label(getattr(obj, "n_ready", 0), total)
        return link(images_changelist_url(task__request=obj.pk), ready)

    @admin.display(description=_("provider tasks"))
    def tasks_link(self, obj: GenerationRequest) -> str:
        url = reverse("admin:imagen_assets_generationtask_changelist")
        return link(f"{url}?request__id__exact={obj.pk}", gettext("See the provider tasks"))


class WebhookEventAdmin(ListPolishMixin, ReadOnlyAdminMixin, WebhookEventModelAdmin):
    """Webhook deliveries as received, and what was done with each."""

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
    change_list_template = LIST_TEMPLATE
    change_form_template = "imagen_assets/admin/change_form.html"
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


class ProviderHealthAdmin(
    ListPolishMixin, ProviderAlertsMixin, ReadOnlyAdminMixin, HealthModelAdmin
):
    """How each provider has been answering: its circuit breaker (docs/reliability.md P7) and
    a refused API key (P4). Rows are written by the jobs; a superuser may delete one to
    forget an outage or an alert at once (the next call starts afresh)."""

    list_display = [
        "provider_name",
        "state",
        "tasks_in_flight",
        "failures",
        "failing_since",
        "retry_at",
        "last_error_preview",
        "key_refused_at",
        "updated_at",
    ]
    list_filter = ["state"]
    ordering = ["provider"]
    Media = ImagenMedia
    change_list_template = LIST_TEMPLATE
    change_form_template = "imagen_assets/admin/change_form.html"
    fields = readonly_fields = (
        "provider",
        "state",
        "failures",
        "failing_since",
        "retry_at",
        "last_error",
        "key_refused_at",
        "key_refused_message",
        "updated_at",
    )

    @admin.display(description=_("provider"), ordering="provider")
    def provider_name(self, obj: ProviderHealth) -> str:
        name = breaker.display_name(obj.provider)
        return name if name == obj.provider else f"{name} ({obj.provider})"

    @admin.display(description=_("tasks"))
    def tasks_in_flight(self, obj: ProviderHealth) -> str:
        """ "12 running, 188 waiting for the provider (50 at once)" for a capped provider."""
        cap = capacity.cap_of(obj.provider)
        running, waiting = capacity.counts(obj.provider)
        text = _("%(running)d running, %(waiting)d waiting for the provider") % {
            "running": running,
            "waiting": waiting,
        }
        if cap is None:
            return text
        return _("%(counts)s (%(cap)d at once)") % {"counts": text, "cap": cap}

    @admin.display(description=_("last error"))
    def last_error_preview(self, obj: ProviderHealth) -> str:
        return error_preview(obj.last_error) if obj.last_error else ""
