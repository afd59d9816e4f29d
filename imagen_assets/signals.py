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

Receivers run in the worker that made the change; an exception in one is logged and does
not undo the change or stop the other receivers.
"""

from __future__ import annotations

from django.dispatch import Signal

image_ready = Signal()
image_failed = Signal()
task_failed = Signal()
