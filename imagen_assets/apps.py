from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ImagenAssetsConfig(AppConfig):
    name = "imagen_assets"
    verbose_name = _("Campaign images")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from imagen_assets import checks, receivers  # noqa: F401  (registers checks, receivers)
