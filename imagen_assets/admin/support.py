"""The support admins: generation tasks, webhook events and providers' health, read-only, for
finding out what happened to an image. Secrets (callback token, idempotency key, API keys)
are never shown."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from imagen_assets import breaker
from imagen_assets.admin.base import (
    ImagenMedia,
    ProviderAlertsMixin,
    admin_link,
    fieldset_fields,
    images_changelist_url,
)
from imagen_assets.models import GenerationTask, ProviderHealth, WebhookEvent
from imagen_assets.templatetags.imagen_admin import error_preview, link, money, pretty_json

if TYPE_CHECKING:
    # django-stubs makes ModelAdmin generic in its model; Django's own class cannot be
    # subscripted at run time.
    TaskModelAdmin = admin.ModelAdmin[GenerationTask]
    WebhookEventModelAdmin = admin.ModelAdmin[WebhookEvent]
    HealthModelAdmin = admin.ModelAdmin[ProviderHealth]
else:
    TaskModelAdmin = WebhookEventModelAdmin = HealthModelAdmin = admin.ModelAdmin


class ReadOnlyAdminMixin:
    """Support views: rows are written by jobs, never by hand; only superusers may delete."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_active and request.user.is_superuser


class GenerationTaskAdmin(ProviderAlertsMixin, ReadOnlyAdminMixin, TaskModelAdmin):
    """Provider tasks: what was sent, what came back, what it cost."""

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


class WebhookEventAdmin(ReadOnlyAdminMixin, WebhookEventModelAdmin):
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


class ProviderHealthAdmin(ProviderAlertsMixin, ReadOnlyAdminMixin, HealthModelAdmin):
    """How each provider has been answering: its circuit breaker (docs/reliability.md P7) and
    a refused API key (P4). Rows are written by the jobs; a superuser may delete one to
    forget an outage or an alert at once (the next call starts afresh)."""

    list_display = [
        "provider_name",
        "state",
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

    @admin.display(description=_("last error"))
    def last_error_preview(self, obj: ProviderHealth) -> str:
        return error_preview(obj.last_error) if obj.last_error else ""
