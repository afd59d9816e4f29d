"""Housekeeping receivers: a deleted image takes its files with it, once the delete commits."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from imagen_assets.models import GeneratedImage, image_storage

logger = logging.getLogger(__name__)


@receiver(post_delete, sender=GeneratedImage, dispatch_uid="imagen_assets_delete_files")
def delete_image_files(
    sender: type[GeneratedImage], instance: GeneratedImage, **kwargs: Any
) -> None:
    names = [name for name in (instance.file.name, instance.thumbnail.name) if name]
    if not names:
        return

    def delete() -> None:
        storage = image_storage()
        for name in names:
            try:
                storage.delete(name)
            except Exception:  # a storage outage must not break the delete that committed
                logger.exception("Could not delete %s from storage", name)

    transaction.on_commit(delete)
