"""Generate again and Cancel on an image's page: the links that open the generate form
prefilled (:mod:`imagen_assets.again`), and the confirmed cancel of the unfinished work of
the image, its task or its request (:mod:`imagen_assets.cancels`)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from imagen_assets import cancels, review
from imagen_assets.explain import explain
from imagen_assets.forms import usable_providers
from imagen_assets.models import GeneratedImage
from imagen_assets.status import (
    ENDED_WITHOUT_FILE_STATUSES,
    OPEN_IMAGE_STATUSES,
    OPEN_TASK_STATUSES,
)
from imagen_assets.templatetags.imagen_admin import money, render_fragment, thumbnail_box

PERM_GENERATE = "imagen_assets.generate_images"


def again_url(image: GeneratedImage, mode: str, **extra: str) -> str:
    """The campaign's generate page, prefilled from ``image`` for ``mode``."""
    url = reverse("admin:imagen_assets_campaign_generate", args=[image.campaign_id])
    return f"{url}?{urlencode({'again': image.pk, 'mode': mode, **extra})}"


def cancel_url(image: GeneratedImage, scope: str = "image") -> str:
    url = reverse("admin:imagen_assets_generatedimage_cancel", args=[image.pk])
    return f"{url}?scope={scope}"


class AgainMixin:
    """For the images admin: the page's "Generate again" and "Cancel" box and the cancel
    confirmation page (``<id>/cancel/?scope=image|task|request``)."""

    admin_site: Any
    opts: Any
    cancel_template = "imagen_assets/admin/cancel_images.html"

    def again_urls(self) -> list[Any]:
        return [
            path(
                "<path:object_id>/cancel/",
                self.admin_site.admin_view(self.cancel_view),
                name="imagen_assets_generatedimage_cancel",
            )
        ]

    def again_list_display(self, request: HttpRequest, columns: list[Any]) -> list[Any]:
        """The list's columns, with the status column offering "Retry" on rows that ended
        without a file to whoever may generate."""
        if not request.user.has_perm(PERM_GENERATE):
            return columns
        return ["status_again_column" if name == "status_column" else name for name in columns]

    @admin.display(description=_("status"), ordering="status")
    def status_again_column(self, obj: GeneratedImage) -> str:
        return render_fragment(
            "status_cell.html",
            {
                "image": obj,
                "explanation": explain(obj),
                "retry_url": (
                    again_url(obj, "retry") if obj.status in ENDED_WITHOUT_FILE_STATUSES else ""
                ),
            },
        )

    def again_context(self, request: HttpRequest, image: GeneratedImage) -> dict[str, Any]:
        """What the image page offers: "Retry", "More like this", "Same seed on another
        provider or model" and, while unfinished, "Cancel"; or why not."""
        if not request.user.has_perm(PERM_GENERATE):
            return {"again_links": [], "again_refusal": ""}
        try:
            review.check_open_for_generation(image.campaign)
        except review.ReviewError as exc:
            refusal = str(exc)
        else:
            refusal = ""
        others = [alias for alias in usable_providers() if alias != image.task.provider]
        links: list[dict[str, str]] = []
        if not refusal:
            links = [
                {
                    "label": gettext("Retry"),
                    "url": again_url(image, "retry"),
                    "help": gettext("Same prompt, seed and provider."),
                },
                {
                    "label": gettext("More like this"),
                    "url": again_url(image, "more"),
                    "help": gettext("Same prompt, new seeds."),
                },
            ]
            if others:
                links.append(
                    {
                        "label": gettext("Same seed on another provider or model"),
                        "url": again_url(image, "other"),
                        "help": gettext("Seed and prompt kept; you choose the provider."),
                    }
                )
        return {
            "again_links": links,
            "again_refusal": refusal,
            "cancel_options": self.cancel_options(image),
        }

    def cancel_options(self, image: GeneratedImage) -> list[dict[str, Any]]:
        """The cancels offered on an unfinished image's page: the image, then its task and
        its request when they hold more unfinished images."""
        if image.status not in OPEN_IMAGE_STATUSES:
            return []
        options: list[dict[str, Any]] = []
        if cancels.refusal(image) is None:
            options.append({"scope": "image", "count": 1, "url": cancel_url(image)})
        seen = 1 if options else 0
        for scope in ("task", "request"):
            count = (
                cancels.scope_images(image, scope)
                .filter(status__in=OPEN_IMAGE_STATUSES, task__status__in=OPEN_TASK_STATUSES)
                .count()
            )
            if count > seen:
                options.append({"scope": scope, "count": count, "url": cancel_url(image, scope)})
                seen = count
        return options

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: what a cancel of ``scope`` would stop and what it may still cost. POST:
        cancel it and say what happened; refused parts say why and change nothing."""
        if request.method not in ("GET", "HEAD", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        if not request.user.has_perm(PERM_GENERATE):
            raise PermissionDenied
        image = self.get_object(request, unquote(object_id))  # type: ignore[attr-defined]
        if image is None:
            raise Http404(gettext("No image with this id."))
        back = reverse("admin:imagen_assets_generatedimage_change", args=[image.pk])
        params = request.POST if request.method == "POST" else request.GET
        scope = params.get("scope", "image")
        if scope not in cancels.SCOPES:
            scope = "image"
        cancellable = cancels.open_in_scope(image, scope)
        if not cancellable:
            reason = cancels.refusal(image) or gettext("Nothing here is unfinished any more.")
            self.message_user(  # type: ignore[attr-defined]
                request,
                gettext("Nothing was cancelled: %(reason)s") % {"reason": reason},
                messages.ERROR,
            )
            return redirect(back)
        if request.method == "POST":
            report = cancels.cancel([row.pk for row in cancellable], user=request.user)
            if report.cancelled:
                self.message_user(request, report.message, messages.SUCCESS)  # type: ignore[attr-defined]
            if report.refused:
                self.message_user(  # type: ignore[attr-defined]
                    request, " ".join(report.refused), messages.WARNING
                )
            return redirect(back)
        tasks = {row.task_id: row.task for row in cancellable}
        at_provider = [task for task in tasks.values() if task.provider_task_id]
        may_cost = sum((task.estimated_cost for task in at_provider), Decimal(0))
        return TemplateResponse(
            request,
            self.cancel_template,
            {
                **self.admin_site.each_context(request),
                "title": ngettext(
                    "Cancel %(count)d unfinished image?",
                    "Cancel %(count)d unfinished images?",
                    len(cancellable),
                )
                % {"count": len(cancellable)},
                "opts": self.opts,
                "image": image,
                "scope": scope,
                "cards": [
                    {"image": row, "thumbnail": thumbnail_box(row)} for row in cancellable[:24]
                ],
                "hidden": max(0, len(cancellable) - 24),
                "count": len(cancellable),
                "tasks": len(tasks),
                "at_provider": len(at_provider),
                "may_cost": money(may_cost),
                "back_url": back,
            },
        )
