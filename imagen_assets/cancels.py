"""Cancelling work not yet finished: an image, its task, or its whole request.

A cancel takes effect here, in the database, first (:func:`lifecycle.cancel_task` and
:func:`lifecycle.cancel_images` lock the task's row, as a completion does): from then on
nothing the provider says about the task moves it, and no file of it is stored. Then, for
a task the provider already has, the provider is asked to cancel it where it can (Wave:
``POST /v1/tasks/{id}/cancel``, only before it starts; docs/providers.md §1.5). Where it
cannot (WaveSpeed, or Wave once the task is processing) we only stop waiting: the provider
finishes the task and may bill it, and the task says so (``CANCELLED_MAY_BILL``: its
estimate stays counted against the budget).

What each cancel did is said in plain words (:attr:`CancelReport.sentences`), and what was
refused says why; a refused cancel changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db.models import QuerySet
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from imagen_assets import breaker, jobs, lifecycle
from imagen_assets.activity import Actor
from imagen_assets.models import GeneratedImage, GenerationTask
from imagen_assets.money import dollars
from imagen_assets.providers import ProviderError, get_provider
from imagen_assets.status import OPEN_IMAGE_STATUSES, OPEN_TASK_STATUSES, ImageStatus

logger = logging.getLogger(__name__)

#: What a cancel may cover, from one image's page.
SCOPES = ("image", "task", "request")


@dataclass
class CancelReport:
    """What a cancel did: images cancelled, one sentence per task, refusals."""

    cancelled: list[int] = field(default_factory=list)
    sentences: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        head = ngettext(
            "Cancelled %(count)d image.", "Cancelled %(count)d images.", len(self.cancelled)
        ) % {"count": len(self.cancelled)}
        return " ".join([head, *self.sentences])


def scope_images(image: GeneratedImage, scope: str) -> QuerySet[GeneratedImage]:
    """The images a cancel of ``scope`` from ``image``'s page covers (all of them, open
    or not): the image, its task's images, or its request's (its task's without one)."""
    if scope == "request" and image.task.request_id is not None:
        return GeneratedImage.objects.filter(task__request_id=image.task.request_id)
    if scope in ("task", "request"):
        return GeneratedImage.objects.filter(task_id=image.task_id)
    return GeneratedImage.objects.filter(pk=image.pk)


def open_in_scope(image: GeneratedImage, scope: str) -> list[GeneratedImage]:
    """The images of ``scope`` (see :func:`scope_images`) that can still be cancelled, in
    task order: what the admin's confirmation and ``imagen_cancel`` both cancel."""
    rows = scope_images(image, scope).select_related("task").order_by("task_id", "index")
    return [row for row in rows if refusal(row) is None]


def refusal(image: GeneratedImage) -> str | None:
    """Why ``image`` cannot be cancelled, or None when it can (it is still being made)."""
    if image.status == ImageStatus.SUCCEEDED:
        return _("Image #%(id)d is ready: there is nothing to cancel.") % {"id": image.pk}
    if image.status not in OPEN_IMAGE_STATUSES:
        return _("Image #%(id)d has already ended (%(status)s): there is nothing to cancel.") % {
            "id": image.pk,
            "status": image.get_status_display(),
        }
    if image.task.status not in OPEN_TASK_STATUSES:
        return _(
            "Image #%(id)d is already made and paid for: it is being stored now and cannot "
            "be cancelled."
        ) % {"id": image.pk}
    return None


def cancel(image_ids: Iterable[int], *, user: Any = None) -> CancelReport:
    """Cancel the unfinished images among ``image_ids`` (whole tasks where every open image
    of the task is among them), as ``user``. Images that cannot be cancelled are reported
    in :attr:`CancelReport.refused` and left as they are."""
    actor = Actor.of(user)
    report = CancelReport()
    images = list(
        GeneratedImage.objects.filter(pk__in=list(image_ids))
        .select_related("task")
        .order_by("task_id", "index")
    )
    by_task: dict[int, list[GeneratedImage]] = {}
    ended: set[str] = set()
    for image in images:
        reason = refusal(image)
        if reason:
            report.refused.append(reason)
        else:
            by_task.setdefault(image.task_id, []).append(image)
    for chosen in by_task.values():
        task = chosen[0].task
        open_ids = set(
            task.images.filter(status__in=OPEN_IMAGE_STATUSES).values_list("pk", flat=True)
        )
        if open_ids <= {image.pk for image in chosen}:
            _cancel_task(task, actor, report)
            ended.add(task.provider)
        else:
            _cancel_some(task, [image.pk for image in chosen], actor, report)
    for alias in sorted(ended):
        # Cancelled tasks left their provider's slots (imagen_assets.capacity). One the
        # provider could not cancel may still run there: WaveSpeed queues a task beyond
        # the account's limit rather than refusing it, so that costs a wait, not a 429.
        jobs.send_waiting(alias)
    return report


def _who(actor: Actor) -> str:
    return actor.label if actor.user is not None else _("the system")


def _cancel_some(task: GenerationTask, ids: list[int], actor: Actor, report: CancelReport) -> None:
    name = breaker.display_name(task.provider)
    message = _(
        "Cancelled by %(who)s. The other images of its task are still being made, and "
        "%(provider)s charges for the task as a whole, so this image may still be charged."
    ) % {"who": _who(actor), "provider": name}
    moved = lifecycle.cancel_images(ids, message, actor)
    if not moved:
        report.refused.append(
            _("Task #%(task)d finished meanwhile: nothing of it was cancelled.") % {"task": task.pk}
        )
        return
    report.cancelled += moved
    report.sentences.append(
        ngettext(
            "%(count)d image of task #%(task)d: %(provider)s still makes the others and bills "
            "the task as a whole.",
            "%(count)d images of task #%(task)d: %(provider)s still makes the others and bills "
            "the task as a whole.",
            len(moved),
        )
        % {"count": len(moved), "task": task.pk, "provider": name}
    )


def _cancel_task(task: GenerationTask, actor: Actor, report: CancelReport) -> None:
    name = breaker.display_name(task.provider)
    values = {"who": _who(actor), "provider": name, "cost": dollars(task.estimated_cost)}
    done = lifecycle.cancel_task(task.pk, _("Cancelled by %(who)s.") % values, actor)
    if done is None:
        report.refused.append(
            _("Task #%(task)d finished meanwhile: nothing of it was cancelled.") % {"task": task.pk}
        )
        return
    refunded = False
    if not done.may_bill:
        message = _("Cancelled by %(who)s before it reached %(provider)s: nothing is charged.")
    elif not done.provider_task_id:
        message = _(
            "Cancelled by %(who)s while it was being sent to %(provider)s, which may still "
            "charge up to %(cost)s for it. Its result will not be stored."
        )
    else:
        message, refunded = _ask_provider(task, done.provider_task_id, values)
    lifecycle.note_cancel_outcome(task.pk, message % values, refunded=refunded or not done.may_bill)
    report.cancelled += done.image_ids
    report.sentences.append(
        _("Task #%(task)d: %(what)s") % {"task": task.pk, "what": message % values}
    )


def _ask_provider(
    task: GenerationTask, provider_task_id: str, values: dict[str, str]
) -> tuple[str, bool]:
    """Ask the provider to cancel a task it has; (the sentence, whether it refunds)."""
    try:
        with get_provider(task.provider) as provider:
            if not provider.supports_cancel:
                return (
                    _(
                        "Cancelled by %(who)s. %(provider)s cannot cancel a task it has "
                        "been given, so it may still charge for it (up to %(cost)s); its "
                        "result will not be stored."
                    ),
                    False,
                )
            cancelled = provider.cancel(provider_task_id)
    except (ProviderError, ImproperlyConfigured) as exc:
        logger.warning("Task %s: cancelling it at %s failed: %s", task.pk, task.provider, exc)
        values["error"] = str(exc)
        return (
            _(
                "Cancelled by %(who)s, but asking %(provider)s to cancel it failed "
                "(%(error)s), so it may still charge for it (up to %(cost)s). Its result "
                "will not be stored."
            ),
            False,
        )
    if cancelled:
        return (
            _(
                "Cancelled by %(who)s; %(provider)s cancelled the task before starting it: "
                "nothing is charged."
            ),
            True,
        )
    return (
        _(
            "Cancelled by %(who)s, but %(provider)s had already started the task and will "
            "charge for it (up to %(cost)s). Its result will not be stored."
        ),
        False,
    )
