"""Where image files go: the storage callable, the ``upload_to`` functions, writing and
deleting files.

The app depends on Django's storage API only (never ``.path``: remote storages have none),
and the storage is looked up on every use so ``IMAGEN_ASSETS["STORAGE"]`` stays live while
migrations stay stable.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Protocol

from django.apps import apps
from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages
from django.core.signals import setting_changed
from django.dispatch import receiver

from imagen_assets import conf

logger = logging.getLogger(__name__)


def image_storage() -> Storage:
    """The storage images are written to, looked up on every use so settings stay live."""
    return storages[conf.get("STORAGE")]


@receiver(setting_changed)
def _follow_storage_settings(*, setting: str, **kwargs: Any) -> None:
    """Give the image fields the storage the changed settings name.

    Django calls a field's ``storage`` callable once, when the model class is built; without
    this, ``override_settings`` of ``STORAGES`` or ``IMAGEN_ASSETS`` (tests, the example
    site's stack) would leave the fields reading files from where they no longer are.
    """
    if setting not in ("STORAGES", "IMAGEN_ASSETS"):
        return
    config = settings.STORAGES.get(conf.get("STORAGE"))
    if config is None:
        return  # midway through changing both settings; the other change follows
    # Made from the settings themselves: Django's receiver that empties the cache of
    # ``storages`` may run after this one.
    storage = storages.create_storage(config)
    model = apps.get_model("imagen_assets", "GeneratedImage")
    for name in ("file", "thumbnail"):
        field: Any = model._meta.get_field(name)
        field.storage = storage


class _Slugged(Protocol):
    @property
    def slug(self) -> str: ...


class InCampaign(Protocol):
    """What the file names need of an image: its campaign's slug."""

    @property
    def campaign(self) -> _Slugged: ...


def _folder(instance: InCampaign) -> str:
    prefix = conf.get("UPLOAD_PREFIX").strip("/")
    return f"{prefix}/{instance.campaign.slug}"


def image_upload_to(instance: InCampaign, filename: str) -> str:
    return f"{_folder(instance)}/{filename}"


def thumbnail_upload_to(instance: InCampaign, filename: str) -> str:
    return f"{_folder(instance)}/thumbs/{filename}"


def save_file(name: str, content: bytes) -> str:
    """Write ``content`` under ``name`` (or a free variant of it); returns the name used."""
    return image_storage().save(name, ContentFile(content))


def delete_files(names: Iterable[str]) -> list[str]:
    """Delete each named file; returns the names that are gone now (deleted, or never
    there). A failure is logged, never raised (the caller's work, e.g. a committed delete,
    must not be undone by a storage outage)."""
    storage = image_storage()
    gone = []
    for name in names:
        if not name:
            continue
        try:
            storage.delete(name)
        except SuspiciousFileOperation:
            # The storage refuses the name, so it never wrote a file under it either.
            logger.warning("Storage refuses the file name %r; nothing to delete", name)
        except Exception:  # storages raise their own types: a full disk, S3 down
            logger.exception("Could not delete %s from storage", name)
            continue
        gone.append(name)
    return gone
