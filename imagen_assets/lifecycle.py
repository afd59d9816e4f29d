"""Every status change of a task and its images: the pipeline's one state machine.

Nothing else writes ``GenerationTask.status`` or ``GeneratedImage.status``, so two runs
racing on a row (a webhook and a poll, a retried job and the reconciler) cannot both move
it, and a row never moves backwards. The public :mod:`imagen_assets.signals` are sent
after the change commits, once per change.

Each function either changes rows under a guard (``UPDATE ... WHERE`` the state it
leaves, or rows locked first) or changes nothing; what it returns says what moved.

The legal transitions (the vocabulary is in :mod:`imagen_assets.status`)::

    task   queued      -> submitted                  record_submitted (the provider's id)
           submitted   -> processing                 apply_state
           queued|submitted|processing
                       -> succeeded                  apply_state (a signed or read state)
           queued|submitted|processing
                       -> failed | cancelled         apply_state, fail_task
                       -> cancelled                  cancel_task (a person's cancel)
    image  queued      -> processing                 with its task (apply_state)
           (ready: review_status none -> pending, the first review round; the review
           itself is imagen_assets.review's)
           queued|processing
                       -> failed | cancelled         with its task (apply_state, fail_task,
                                                     cancel_task)
                       -> cancelled                  cancel_images (its task still open)
           queued|processing (task succeeded)
                       -> succeeded | failed         finish_image (its file stored, or not)
                       -> filtered                   withhold_images (the provider sent
                                                     fewer images than asked)

Besides status, a queued task carries its submit claim: ``claim_submit`` takes a lease,
``mark_submit_started`` notes that the provider call is under way, ``hold_submit``
releases it until a retry is due, ``defer_submit`` keeps an unclaimed task waiting for its
provider to answer again (no attempt counted). A running task carries its read schedule
(``schedule_read``, ``count_read``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from imagen_assets import activity, orphans, signals
from imagen_assets.models import GeneratedImage, GenerationTask
from imagen_assets.providers.types import ProviderTask
from imagen_assets.status import (
    CANCELLED_MAY_BILL,
    CANCELLED_UNBILLED,
    IMAGE_STATUS_FOR_TASK,
    OPEN_IMAGE_STATUSES,
    OPEN_TASK_STATUSES,
    ImageStatus,
    ReviewStatus,
    TaskStatus,
)

logger = logging.getLogger(__name__)


# -- submit ----------------------------------------------------------------------------------


def claim_submit(task_id: int, lease: datetime) -> bool:
    """Take the submit claim of a queued task with no provider id, until ``lease``.

    Refused while another run's lease is live. Counts the attempt.
    """
    now = timezone.now()
    return bool(
        GenerationTask.objects.filter(pk=task_id, status=TaskStatus.QUEUED, provider_task_id="")
        .filter(Q(submit_lease_until__isnull=True) | Q(submit_lease_until__lt=now))
        .update(submit_lease_until=lease, attempts=F("attempts") + 1, updated_at=now)
    )


def mark_submit_started(task_id: int, lease: datetime) -> bool:
    """Note that the provider call is under way: if the worker dies before the outcome is
    known, the next attempt finds this and knows the provider may have been billed.

    False (and nothing is to be sent) when the task is no longer queued under this claim:
    a person cancelled it after the claim was taken."""
    return bool(
        GenerationTask.objects.filter(
            pk=task_id, status=TaskStatus.QUEUED, submit_lease_until=lease
        ).update(submit_started_at=timezone.now())
    )


def wait_for_slot(task_id: int, lease: datetime, message: str) -> None:
    """Give back the claim taken with ``lease`` without sending: the provider has no slot
    (:mod:`imagen_assets.capacity`). Not an attempt; the task waits, saying why, until a
    slot frees (or the reconciler looks again)."""
    GenerationTask.objects.filter(
        pk=task_id, status=TaskStatus.QUEUED, submit_lease_until=lease
    ).update(
        submit_lease_until=None,
        attempts=F("attempts") - 1,
        error_message=message,
        updated_at=timezone.now(),
    )


def record_submitted(
    task_id: int, lease: datetime, provider_task_id: str, body: dict[str, Any], first_read: float
) -> bool:
    """``queued -> submitted``: save the provider's task id, only while the claim taken
    with ``lease`` still holds; the first status read is due in ``first_read`` seconds."""
    now = timezone.now()
    return bool(
        GenerationTask.objects.filter(
            pk=task_id, status=TaskStatus.QUEUED, provider_task_id="", submit_lease_until=lease
        ).update(
            provider_task_id=provider_task_id,
            status=TaskStatus.SUBMITTED,
            submitted_at=now,
            submit_lease_until=None,
            submit_started_at=None,
            next_poll_at=now + timedelta(seconds=first_read),
            request_body=body,
            error_message="",
            error_code="",
            updated_at=now,
        )
    )


def hold_submit(task_id: int, until: datetime, error_code: str, message: str) -> None:
    """Keep a queued task's claim until ``until`` (a retry is due then), noting why: neither
    the reconciler nor another run submits earlier than the provider asked (Retry-After).
    The provider answered, so the attempt's outcome is known."""
    GenerationTask.objects.filter(pk=task_id, provider_task_id="").update(
        submit_lease_until=until,
        submit_started_at=None,
        error_code=error_code,
        error_message=message,
        updated_at=timezone.now(),
    )


def defer_submit(task_id: int, until: datetime, message: str) -> bool:
    """Keep a queued, unclaimed task from being submitted before ``until``: its provider
    is not answering (:mod:`imagen_assets.breaker`). No attempt is counted; the reconciler
    leaves it alone until then. False when another run holds its claim."""
    now = timezone.now()
    return bool(
        GenerationTask.objects.filter(pk=task_id, status=TaskStatus.QUEUED, provider_task_id="")
        .filter(Q(submit_lease_until__isnull=True) | Q(submit_lease_until__lt=now))
        .update(submit_lease_until=until, error_message=message, updated_at=now)
    )


# -- ending a task ---------------------------------------------------------------------------


def fail_task(task_id: int, message: str, code: str = "", *, cancelled: bool = False) -> bool:
    """``open -> failed`` (or ``cancelled``) for the task and its open images, keeping the
    reason. Nothing happens to a task that already ended."""
    now = timezone.now()
    status = TaskStatus.CANCELLED if cancelled else TaskStatus.FAILED
    with transaction.atomic():
        updated = GenerationTask.objects.filter(pk=task_id, status__in=OPEN_TASK_STATUSES).update(
            status=status,
            error_message=message,
            error_code=code,
            completed_at=now,
            submit_lease_until=None,
            submit_started_at=None,
            next_poll_at=None,
            cost=Decimal(0),
            updated_at=now,
        )
        if updated:
            _images_follow(task_id, status, message, now)
    if updated:
        logger.warning("Task %s %s: %s", task_id, status, message)
    return bool(updated)


@dataclass(frozen=True)
class Cancelled:
    """What :func:`cancel_task` did: the images it cancelled, and whether the task may
    have reached its provider (its provider task id, empty when it never got one)."""

    image_ids: list[int]
    campaign_id: int
    provider_task_id: str
    may_bill: bool


def cancel_task(task_id: int, message: str, actor: activity.Actor) -> Cancelled | None:
    """``open -> cancelled`` for the task and its open images, at a person's request.

    The row is locked first, so a completion racing the cancel (``apply_state`` locks it
    too) ends one way only: whichever commits first wins and the other changes nothing.
    None when the task has already ended. A task that may have reached its provider (it
    has a provider id, or a submit call is under way) is recorded as
    :data:`~imagen_assets.status.CANCELLED_MAY_BILL` with an unknown cost; one that
    cannot have is :data:`~imagen_assets.status.CANCELLED_UNBILLED`, cost 0.
    """
    now = timezone.now()
    with transaction.atomic():
        task = (
            GenerationTask.objects.select_for_update()
            .filter(pk=task_id, status__in=OPEN_TASK_STATUSES)
            .first()
        )
        if task is None:
            return None
        # Only a call under way or made can bill: a claim alone (a submit about to start,
        # or one waiting for a provider that is down, a Retry-After) sends nothing once the
        # task is cancelled, since mark_submit_started then finds it no longer queued.
        may_bill = bool(task.provider_task_id or task.submit_started_at is not None)
        task.status = TaskStatus.CANCELLED
        task.error_message = message
        task.error_code = CANCELLED_MAY_BILL if may_bill else CANCELLED_UNBILLED
        task.completed_at = now
        task.submit_lease_until = task.submit_started_at = task.next_poll_at = None
        task.cost = None if may_bill else Decimal(0)
        task.save(
            update_fields=[
                "status",
                "error_message",
                "error_code",
                "completed_at",
                "submit_lease_until",
                "submit_started_at",
                "next_poll_at",
                "cost",
                "updated_at",
            ]
        )
        ids = _cancel_open_images(task_id, message, actor, now)
        signals.send_on_commit(
            signals.task_failed,
            GenerationTask,
            task_id=task_id,
            status=TaskStatus.CANCELLED,
            reason=message,
        )
    logger.info("Task %s cancelled by %s (may bill: %s)", task_id, actor.label, may_bill)
    return Cancelled(ids, task.campaign_id, task.provider_task_id, may_bill)


def note_cancel_outcome(task_id: int, message: str, *, refunded: bool) -> bool:
    """After :func:`cancel_task`, what the provider said to our cancel: ``refunded`` (it
    cancelled the task before starting it: nothing is charged) or not (the message says
    what it may still charge). Only a cancelled task's reason and cost change."""
    fields: dict[str, Any] = {"error_message": message, "updated_at": timezone.now()}
    if refunded:
        fields.update(error_code=CANCELLED_UNBILLED, cost=Decimal(0))
    updated = GenerationTask.objects.filter(pk=task_id, status=TaskStatus.CANCELLED).update(
        **fields
    )
    if updated:
        GeneratedImage.objects.filter(task_id=task_id, status=ImageStatus.CANCELLED).update(
            error_message=message, updated_at=fields["updated_at"]
        )
    return bool(updated)


def note_late_submit(task_id: int, provider_task_id: str, message: str) -> bool:
    """A submit that was under way when a person cancelled the task got its answer: the
    provider's task id is kept on the cancelled task (so support can find what the provider
    may bill) with what was done about it."""
    return bool(
        GenerationTask.objects.filter(
            pk=task_id, status=TaskStatus.CANCELLED, provider_task_id=""
        ).update(
            provider_task_id=provider_task_id[:200],
            error_message=message,
            updated_at=timezone.now(),
        )
    )


def cancel_images(image_ids: Sequence[int], message: str, actor: activity.Actor) -> list[int]:
    """``open -> cancelled`` for some images of one task that goes on (its other images are
    still wanted). Under the task's row lock: once the task has succeeded (its images are
    being stored, and paid for) nothing is cancelled, and a completion waiting for the lock
    finds these images no longer open and stores nothing for them. Returns the ids moved."""
    if not image_ids:
        return []
    now = timezone.now()
    with transaction.atomic():
        task_ids = set(
            GeneratedImage.objects.filter(pk__in=image_ids).values_list("task_id", flat=True)
        )
        if len(task_ids) != 1:
            raise ValueError("cancel_images takes images of one task")
        (task_id,) = task_ids
        task = (
            GenerationTask.objects.select_for_update()
            .filter(pk=task_id, status__in=OPEN_TASK_STATUSES)
            .first()
        )
        if task is None:
            return []
        moved = _cancel_open_images(task_id, message, actor, now, only=image_ids)
    return moved


def _cancel_open_images(
    task_id: int,
    message: str,
    actor: activity.Actor,
    now: datetime,
    only: Sequence[int] | None = None,
) -> list[int]:
    """Cancel the task's open images (``only`` these), logged as the actor's and signalled
    on commit; inside the caller's transaction, which holds the task's row lock."""
    images = GeneratedImage.objects.filter(task_id=task_id, status__in=OPEN_IMAGE_STATUSES)
    if only is not None:
        images = images.filter(pk__in=list(only))
    rows = list(images.select_for_update().values_list("pk", "campaign_id"))
    ids = [pk for pk, _campaign in rows]
    GeneratedImage.objects.filter(pk__in=ids, status__in=OPEN_IMAGE_STATUSES).update(
        status=ImageStatus.CANCELLED, error_message=message, completed_at=now, updated_at=now
    )
    if rows:
        activity.record_many(rows[0][1], activity.Verb.CANCELLED, actor, ids, note=message)
    _send_images_failed(ids, ImageStatus.CANCELLED, message)
    return ids


def apply_state(task_id: int, state: ProviderTask, *, counted_poll: bool) -> GenerationTask:
    """Record what the provider said, only ever moving forward; returns the saved task.

    A late or out-of-order report (a ``processing`` after ``succeeded``) changes nothing
    but the read count. The task's open images follow it (:data:`IMAGE_STATUS_FOR_TASK`).
    """
    now = timezone.now()
    with transaction.atomic():
        task = GenerationTask.objects.select_for_update().get(pk=task_id)
        if counted_poll:
            task.polls += 1
        current = task.status_enum
        if not current.terminal and unexpected_reads(task.error_code):
            # A sane answer ends a run of unexpected ones (P6 counts them in a row).
            task.error_code = task.error_message = ""
        if current.terminal or state.status.rank < current.rank:
            task.save(update_fields=["polls", "error_code", "error_message", "updated_at"])
            return task
        if state.progress is not None:
            task.progress = max(task.progress, min(100, max(0, state.progress)))
        task.status = state.status
        if state.status == TaskStatus.SUCCEEDED:
            task.progress = 100
            task.completed_at = now
            task.outputs = [output.to_json() for output in state.outputs]
            task.cost = state.cost if state.cost is not None else _delivered_cost(task, state)
        elif state.status in (TaskStatus.FAILED, TaskStatus.CANCELLED):
            task.completed_at = now
            task.cost = state.cost or Decimal(0)
            task.error_code = state.error_code
            task.error_message = state.error_message or (
                "The provider cancelled the task."
                if state.status == TaskStatus.CANCELLED
                else "The provider reported a failure without a message."
            )
        task.save()
        if state.status in IMAGE_STATUS_FOR_TASK:
            _images_follow(task_id, state.status, task.error_message, now)
    return task


def _delivered_cost(task: GenerationTask, state: ProviderTask) -> Decimal:
    """The estimate, for the images actually delivered, when the provider reports no cost."""
    per_image = task.estimated_cost / task.num_images if task.num_images else Decimal(0)
    return per_image * min(len(state.outputs), task.num_images)


def _images_follow(task_id: int, status: TaskStatus, message: str, now: datetime) -> None:
    """Move the task's open images to the status that follows the task's ``status``
    (:data:`IMAGE_STATUS_FOR_TASK`), inside the caller's transaction: ``processing`` starts
    queued images; an ending fails or cancels them, logged and signalled on commit."""
    image_status = IMAGE_STATUS_FOR_TASK[status]
    images = GeneratedImage.objects.filter(task_id=task_id, status__in=OPEN_IMAGE_STATUSES)
    if image_status == ImageStatus.PROCESSING:
        images.filter(status=ImageStatus.QUEUED).update(status=image_status, updated_at=now)
        return
    rows = list(images.select_for_update().values_list("pk", "campaign_id"))
    ids = [pk for pk, _campaign in rows]
    images.filter(pk__in=ids).update(status=image_status, error_message=message, updated_at=now)
    if rows:
        activity.record_system(rows[0][1], activity.Verb.FAILED, ids, note=message)
    signals.send_on_commit(
        signals.task_failed,
        GenerationTask,
        task_id=task_id,
        status=status,
        reason=message,
    )
    _send_images_failed(ids, image_status, message)


# -- reads -----------------------------------------------------------------------------------


#: ``error_code`` of an open task whose last reads got answers that could not be read,
#: ``unexpected:<reads in a row>`` (row P6); cleared by the next sane answer.
UNEXPECTED_PREFIX = "unexpected:"


def unexpected_reads(error_code: str) -> int:
    """How many status reads in a row got an unexpected answer, from the task's code."""
    count = error_code.removeprefix(UNEXPECTED_PREFIX)
    return int(count) if error_code.startswith(UNEXPECTED_PREFIX) and count.isdigit() else 0


def note_unexpected_read(task_id: int, message: Callable[[int], str]) -> int:
    """One more status read whose answer could not be read (row P6): counted, and kept on
    the open task with ``message(reads in a row)``. Returns how many in a row now; 0 when
    the task has ended meanwhile."""
    with transaction.atomic():
        task = GenerationTask.objects.select_for_update().filter(pk=task_id).first()
        if task is None or task.status_enum.terminal:
            return 0
        count = unexpected_reads(task.error_code) + 1
        task.polls += 1
        task.error_code = f"{UNEXPECTED_PREFIX}{count}"
        task.error_message = message(count)
        task.save(update_fields=["polls", "error_code", "error_message", "updated_at"])
    return count


def count_read(task_id: int) -> None:
    """One more status read (that did not get an answer)."""
    GenerationTask.objects.filter(pk=task_id).update(
        polls=F("polls") + 1, updated_at=timezone.now()
    )


def schedule_read(task_id: int, delay: float) -> None:
    """The next status read is due in ``delay`` seconds; an earlier one will do nothing."""
    GenerationTask.objects.filter(pk=task_id).update(
        next_poll_at=timezone.now() + timedelta(seconds=delay)
    )


# -- images of a succeeded task --------------------------------------------------------------


def withhold_images(image_ids: Sequence[int], message: str) -> int:
    """``open -> filtered``: the provider delivered fewer images than asked (most likely
    its safety filter). Returns how many moved."""
    now = timezone.now()
    with transaction.atomic():
        # Locked: a second run racing on the same images (a webhook and a poll) waits,
        # then finds them no longer open, and neither logs nor signals them again.
        rows = list(
            GeneratedImage.objects.select_for_update()
            .filter(pk__in=image_ids, status__in=OPEN_IMAGE_STATUSES)
            .values_list("pk", "campaign_id")
        )
        moved = [pk for pk, _campaign in rows]
        GeneratedImage.objects.filter(pk__in=moved, status__in=OPEN_IMAGE_STATUSES).update(
            status=ImageStatus.FILTERED, error_message=message, completed_at=now, updated_at=now
        )
        if rows:
            activity.record_system(rows[0][1], activity.Verb.FAILED, moved, note=message)
        _send_images_failed(moved, ImageStatus.FILTERED, message)
    return len(moved)


def note_image_retry(image_id: int, message: str) -> bool:
    """Keep an open image open (storing it will be tried again), saying why."""
    return bool(
        GeneratedImage.objects.filter(pk=image_id, status__in=OPEN_IMAGE_STATUSES).update(
            error_message=message, updated_at=timezone.now()
        )
    )


@dataclass(frozen=True)
class FileFields:
    """What a stored file tells about its image (model fields of the same names)."""

    file: str
    thumbnail: str
    width: int
    height: int
    bytes: int
    sha256: str  # of the stored (clean) file
    content_type: str
    served_sha256: str = ""  # of the file the provider served
    provider_c2pa: bool = False  # the served file carried a C2PA manifest
    #: Whether the names were recorded before they were written (``ingest.store``): the
    #: image adopts the records when it takes the files (:mod:`imagen_assets.orphans`).
    recorded: bool = False

    def columns(self) -> dict[str, Any]:
        """The image's columns these values fill."""
        return {key: value for key, value in vars(self).items() if key != "recorded"}


def finish_image(
    image_id: int,
    *,
    source_url: str,
    nsfw: bool,
    stored: FileFields | None = None,
    error: str = "",
) -> bool:
    """``open -> succeeded`` with its ``stored`` file, or ``open -> failed`` with ``error``.

    False when another run finished the image first: the caller then owns the files it
    wrote and must delete them. Raises :class:`~imagen_assets.orphans.FilesSwept` (and
    changes nothing) when the sweep deleted recorded files before the image took them.
    """
    now = timezone.now()
    fields: dict[str, Any] = {
        "source_url": source_url[:2000],
        "nsfw": nsfw,
        "completed_at": now,
        "updated_at": now,
    }
    if stored is not None:
        # Ready: its first review round starts.
        fields.update(
            status=ImageStatus.SUCCEEDED,
            review_status=ReviewStatus.PENDING,
            error_message="",
            **stored.columns(),
        )
    else:
        fields.update(status=ImageStatus.FAILED, error_message=error)
    with transaction.atomic():
        won = bool(
            GeneratedImage.objects.filter(pk=image_id, status__in=OPEN_IMAGE_STATUSES).update(
                **fields
            )
        )
        if won and stored is not None:
            # The image owns its files now: their records go, in this transaction. Fewer
            # than written means the sweep took them first (it holds a record while it
            # deletes the file): undo, the image stays open and is stored again.
            names = [stored.file, stored.thumbnail]
            if orphans.adopt(names) < len(names) and stored.recorded:
                raise orphans.FilesSwept(
                    f"The files of image {image_id} were swept before it could take them"
                )
        if won:
            campaign_id = (
                GeneratedImage.objects.filter(pk=image_id).values_list("campaign_id", flat=True)
            )[0]
            verb = activity.Verb.READY if stored is not None else activity.Verb.FAILED
            activity.record_system(campaign_id, verb, [image_id], note=error)
        if won and stored is not None:
            transaction.on_commit(lambda: _send_ready(image_id))
        elif won:
            signals.send_on_commit(
                signals.image_failed,
                GeneratedImage,
                image_id=image_id,
                status=ImageStatus.FAILED,
                reason=error,
            )
    return won


def _send_ready(image_id: int) -> None:
    if not signals.image_ready.has_listeners(GeneratedImage):
        return
    image = GeneratedImage.objects.filter(pk=image_id).first()
    if image is not None:
        signals.image_ready.send_robust(GeneratedImage, image=image)


def _send_images_failed(image_ids: list[int], status: str, reason: str) -> None:
    """``image_failed`` for each of ``image_ids`` (ended as ``status``), once committed."""
    for image_id in image_ids:
        signals.send_on_commit(
            signals.image_failed, GeneratedImage, image_id=image_id, status=status, reason=reason
        )
