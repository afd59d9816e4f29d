"""Housekeeping receivers: an approved image cannot be deleted; a deleted image takes its
files with it, once the delete commits (recorded for the sweep until they are gone); a step
of the workflow queues its e-mail."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import ProtectedError, QuerySet
from django.db.models.signals import post_delete, pre_delete
from django.dispatch import receiver

from imagen_assets import notifications, orphans, signals
from imagen_assets.models import Activity, GeneratedImage
from imagen_assets.status import ReviewStatus


@receiver(pre_delete, sender=GeneratedImage, dispatch_uid="imagen_assets_protect_approved")
def protect_approved_image(
    sender: type[GeneratedImage], instance: GeneratedImage, **kwargs: Any
) -> None:
    """Approved means frozen: no path deletes an approved image (the admin, a queryset
    delete, a cascade); its approval must be revoked first, which is logged.

    The row is read again when the image itself is being deleted: the instance in hand may
    have been loaded before the approval. A cascade (from its campaign or task) was checked
    on fresh rows by ``models.protect_approved`` already.
    """
    origin = kwargs.get("origin")
    direct = origin is instance or (isinstance(origin, QuerySet) and origin.model is GeneratedImage)
    if instance.review_status == ReviewStatus.APPROVED or (
        direct
        # Locked: an approval committing meanwhile waits for this delete, then finds no
        # image; one that committed first is seen here.
        and GeneratedImage.objects.select_for_update()
        .filter(pk=instance.pk, review_status=ReviewStatus.APPROVED)
        .exists()
    ):
        raise ProtectedError(
            f"Image #{instance.pk} is approved and cannot be deleted; revoke its approval first.",
            {instance},
        )


@receiver(post_delete, sender=GeneratedImage, dispatch_uid="imagen_assets_delete_files")
def delete_image_files(
    sender: type[GeneratedImage], instance: GeneratedImage, **kwargs: Any
) -> None:
    names = [instance.file.name or "", instance.thumbnail.name or ""]
    if any(names):
        # Recorded in the delete's transaction: should deleting the files after the commit
        # fail (storage down), the sweep deletes them later.
        orphans.release(names, instance.pk)
        transaction.on_commit(lambda: orphans.remove(names))


signals.activity_recorded.connect(
    notifications.queue_for_activity, sender=Activity, dispatch_uid="imagen_assets_notify"
)
