"""The campaign page's exports: "Download approved images" (queues a zip), the list of the
campaign's exports, and the permission-checked download of a ready zip.

A mixin of :class:`~imagen_assets.admin.campaigns.CampaignAdmin`, so the export pages live
beside, not inside, the campaign admin's own. Everything is decided by
:mod:`imagen_assets.exports`; this is the admin's face of it.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils.translation import gettext

from imagen_assets import exports
from imagen_assets.activity import Actor
from imagen_assets.models import Campaign, Export
from imagen_assets.review import ReviewError
from imagen_assets.storage import image_storage

#: How many of a campaign's exports its page lists, newest first.
EXPORTS_SHOWN = 10


class CampaignExportsMixin:
    """Adds to a campaign ModelAdmin: the export list on the change page, the POST that asks
    for a new export, and the download of a ready one; all need the export permission."""

    admin_site: Any
    get_object: Any
    message_user: Any

    def has_export_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm(exports.PERM_EXPORT))

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/export/",
                view(self.export_view),
                name="imagen_assets_campaign_export",
            ),
            path(
                "<path:object_id>/exports/<int:export_id>/download/",
                view(self.download_export_view),
                name="imagen_assets_campaign_export_download",
            ),
            *super().get_urls(),  # type: ignore[misc]
        ]

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Campaign | None = None,
    ) -> HttpResponse:
        if obj is not None and self.has_export_permission(request):
            context["exports_section"] = self.exports_section(obj)
        return super().render_change_form(  # type: ignore[misc,no-any-return]
            request, context, add, change, form_url, obj
        )

    def exports_section(self, campaign: Campaign) -> str:
        """The campaign's latest exports, each with its state and, when ready, its link."""
        rows = [
            {
                "export": export,
                "url": reverse(
                    "admin:imagen_assets_campaign_export_download", args=[campaign.pk, export.pk]
                )
                if export.status == Export.Status.READY
                else None,
                "count": len(export.image_ids),
            }
            for export in campaign.exports.select_related("requested_by")[:EXPORTS_SHOWN]
        ]
        return render_to_string(
            "imagen_assets/admin/campaign_exports.html",
            {
                "campaign": campaign,
                "rows": rows,
                "approved": campaign.images.approved().count(),
                "export_url": reverse("admin:imagen_assets_campaign_export", args=[campaign.pk]),
            },
        )

    def _campaign(self, request: HttpRequest, object_id: str) -> Campaign:
        if not self.has_export_permission(request):
            raise PermissionDenied
        campaign = self.get_object(request, unquote(object_id))
        if campaign is None:
            raise Http404(gettext("No campaign with this id."))
        return campaign  # type: ignore[no-any-return]

    def export_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: queue a zip of the approved images, then back to the campaign's page."""
        campaign = self._campaign(request, object_id)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        try:
            exports.request_export(campaign.pk, Actor.of(request.user))
        except ReviewError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(
                request,
                gettext(
                    "Building a zip of the approved images of %(campaign)s; reload this page "
                    "in a moment to download it."
                )
                % {"campaign": campaign},
                messages.SUCCESS,
            )
        url = reverse("admin:imagen_assets_campaign_change", args=[campaign.pk])
        return redirect(f"{url}#imagen-exports")

    def download_export_view(
        self, request: HttpRequest, object_id: str, export_id: int
    ) -> FileResponse:
        """Stream a ready zip from storage (never through a public storage URL)."""
        campaign = self._campaign(request, object_id)
        export = campaign.exports.filter(pk=export_id, status=Export.Status.READY).first()
        if export is None:
            raise Http404(gettext("No ready export with this id for this campaign."))
        try:
            stream = image_storage().open(export.file_name, "rb")
        except FileNotFoundError:
            raise Http404(gettext("The zip of this export is no longer in storage.")) from None
        return FileResponse(
            stream,
            as_attachment=True,
            filename=exports.download_name(export),
            content_type="application/zip",
        )
