"""Public signals a host site can connect to, e.g. to publish an image once it is ready.

Each is sent once per change, after the transaction that made it commits (never for a
change that rolled back), with ``sender`` the model class:

``image_ready``
    An image's file is stored and it can be reviewed. Arguments: ``image``.
``image_failed``
    An image ended without a file (failed, withheld by the provider or cancelled).
    Arguments: ``image_id``, ``status`` (an :class:`~imagen_assets.status.ImageStatus`),
    ``reason``.
``task_failed``
    A provider task failed or was cancelled, taking its open images with it.
    Arguments: ``task_id``, ``status`` (a :class:`~imagen_assets.status.TaskStatus`),
    ``reason``.
``image_approved`` / ``image_rejected``
    A review round was decided. Arguments: ``image``, ``decision`` (the
    :class:`~imagen_assets.models.ReviewDecision` that decided it).
``image_revoked``
    An approved or rejected image went back to pending review (a new round).
    Arguments: ``image``, ``decision`` (the revoke, with its reason in ``note``).
``campaign_status_changed``
    A campaign moved in its sign-off. Arguments: ``campaign``, ``old``, ``new`` (each a
    :class:`~imagen_assets.status.CampaignStatus`), ``actor`` (a label).
``export_ready``
    A zip of a campaign's approved images was built. Arguments: ``export``.
``activity_recorded``
    A row of the activity log recorded for a person's step (what notifications listen
    to); not for what the pipeline logs on its own (images ready or failed). Arguments:
    ``activity``.

Receivers run in the worker that made the change; an exception in one is logged and does
not undo the change or stop the other receivers.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.dispatch import Signal

image_ready = Signal()
image_failed = Signal()
task_failed = Signal()
image_approved = Signal()
image_rejected = Signal()
image_revoked = Signal()
campaign_status_changed = Signal()
export_ready = Signal()
activity_recorded = Signal()


def send_on_commit(signal: Signal, sender: type[Any], **kwargs: Any) -> None:
    """Send ``signal`` once the current transaction commits (at once outside one); nothing
    for a change that rolls back. Free when nobody listens."""
    if signal.has_listeners(sender):
        transaction.on_commit(lambda: signal.send_robust(sender, **kwargs))
