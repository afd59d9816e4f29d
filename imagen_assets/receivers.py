"""Housekeeping receivers: a deleted image takes its files with it, once the delete commits."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from imagen_assets.models import GeneratedImage
from imagen_assets.storage import delete_files


@receiver(post_delete, sender=GeneratedImage, dispatch_uid="imagen_assets_delete_files")
def delete_image_files(
    sender: type[GeneratedImage], instance: GeneratedImage, **kwargs: Any
) -> None:
    names = [name for name in (instance.file.name, instance.thumbnail.name) if name]
    if names:
        transaction.on_commit(lambda: delete_files(names))
