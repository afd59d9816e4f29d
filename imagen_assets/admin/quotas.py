"""Per-user daily quotas: the overrides of the site's ``USER_DAILY_IMAGES`` and
``USER_DAILY_SPEND``, with what each user used today."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from imagen_assets import quotas
from imagen_assets.models import UserQuota
from imagen_assets.money import dollars

if TYPE_CHECKING:
    QuotaModelAdmin = admin.ModelAdmin[UserQuota]
else:
    QuotaModelAdmin = admin.ModelAdmin


def _site_default() -> quotas.Quota:
    try:
        return quotas.site_default()
    except ValueError:  # check E090/E091 says so
        return quotas.Quota()


class UserQuotaAdmin(QuotaModelAdmin):
    """One row per user whose quota differs from the site's; empty fields keep the site's."""

    list_display = ["user", "images_column", "spend_column", "unlimited", "updated_at"]
    list_filter = ["unlimited"]
    raw_id_fields = ["user"]
    fields = ["user", "images_per_day", "spend_per_day", "unlimited", "today"]
    readonly_fields = ["today"]

    def get_search_fields(self, request: Any) -> list[str]:
        return [f"user__{get_user_model().USERNAME_FIELD}"]

    def get_queryset(self, request: Any) -> Any:
        return super().get_queryset(request).select_related("user")

    @admin.display(description=_("images per day"), ordering="images_per_day")
    def images_column(self, obj: UserQuota) -> str:
        if obj.unlimited:
            return gettext("No limit")
        if obj.images_per_day is not None:
            return str(obj.images_per_day)
        default = _site_default().images
        if default is None:
            return gettext("Site default (no limit)")
        return gettext("Site default (%(limit)d)") % {"limit": default}

    @admin.display(description=_("spend per day"), ordering="spend_per_day")
    def spend_column(self, obj: UserQuota) -> str:
        if obj.unlimited:
            return gettext("No limit")
        if obj.spend_per_day is not None:
            return dollars(obj.spend_per_day)
        default = _site_default().spend
        if default is None:
            return gettext("Site default (no limit)")
        return gettext("Site default (%(limit)s)") % {"limit": dollars(default)}

    @admin.display(description=_("used today"))
    def today(self, obj: UserQuota) -> str:
        """What the user's requests of today count against the quota that applies now."""
        if obj.pk is None:
            return "—"
        try:
            quota = quotas.quota_for(obj.user_id)
        except ValueError:
            quota = quotas.Quota()
        used = quotas.used_today(obj.user_id)
        images = (
            gettext("%(used)d of %(limit)d images") % {"used": used.images, "limit": quota.images}
            if quota.images is not None
            else gettext("%(used)d images (no limit)") % {"used": used.images}
        )
        spend = (
            gettext("%(used)s of %(limit)s")
            % {"used": dollars(used.spend), "limit": dollars(quota.spend)}
            if quota.spend is not None
            else gettext("%(used)s (no limit)") % {"used": dollars(used.spend)}
        )
        return gettext("%(images)s, %(spend)s; the day resets at midnight (%(zone)s).") % {
            "images": images,
            "spend": spend,
            "zone": quotas.zone_name(),
        }
