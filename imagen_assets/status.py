"""The one vocabulary of the pipeline: what state a task, an image and a review can be in.

Everything else (models, providers, lifecycle, admin) takes these words from here. A
provider module maps its vendor's words onto :class:`TaskStatus`; the models use these
classes as their field choices; :mod:`imagen_assets.lifecycle` is the only writer.

A task moves ``queued -> submitted -> processing -> succeeded | failed | cancelled``; its
rank never decreases. Its images follow it (:data:`IMAGE_STATUS_FOR_TASK`), except that a
succeeded task's images become ``succeeded``, ``failed`` or ``filtered`` one by one as
their files are stored.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class TaskStatus(models.TextChoices):
    """A provider task, in the order it moves through its states."""

    QUEUED = "queued", _("Queued")
    SUBMITTED = "submitted", _("Submitted")
    PROCESSING = "processing", _("Processing")
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Failed")
    CANCELLED = "cancelled", _("Cancelled")

    @property
    def terminal(self) -> bool:
        """Whether the task can change no more."""
        return self in TERMINAL_TASK_STATUSES

    @property
    def rank(self) -> int:
        """Position in the lifecycle; a task's rank never decreases."""
        return _RANK[self]


class ImageStatus(models.TextChoices):
    """One output image of a task."""

    QUEUED = "queued", _("Queued")
    PROCESSING = "processing", _("Generating")
    SUCCEEDED = "succeeded", _("Ready")
    FILTERED = "filtered", _("Withheld by provider")
    FAILED = "failed", _("Failed")
    CANCELLED = "cancelled", _("Cancelled")

    @property
    def terminal(self) -> bool:
        """Whether the image can change no more."""
        return self not in OPEN_IMAGE_STATUSES


class ReviewStatus(models.TextChoices):
    """Where a ready image's review stands, derived from the decisions of its current round.

    ``none``: not reviewable (not ready yet, or ended without a file: failed, withheld,
    cancelled); such an image is never "pending review".
    """

    NONE = "none", _("Not for review")
    PENDING = "pending", _("Pending review")
    APPROVED = "approved", _("Approved")
    REJECTED = "rejected", _("Rejected")


class Decision(models.TextChoices):
    """What a reviewer records about a ready image (an append-only row each)."""

    APPROVE = "approve", _("Approve")
    REJECT = "reject", _("Reject")
    #: Ends the round of an approved or rejected image and starts a new one.
    REVOKE = "revoke", _("Revoke")


class CampaignStatus(models.TextChoices):
    """A campaign's sign-off::

    draft -> in_review -> approved -> archived
             in_review -> changes_requested -> in_review
    any -> archived;  archived | approved -> draft (reopen)
    """

    DRAFT = "draft", _("Draft")
    IN_REVIEW = "in_review", _("In review")
    CHANGES_REQUESTED = "changes_requested", _("Changes requested")
    APPROVED = "approved", _("Approved")
    ARCHIVED = "archived", _("Archived")


#: Campaign states in which no more images may be generated.
CLOSED_CAMPAIGN_STATUSES = (CampaignStatus.APPROVED, CampaignStatus.ARCHIVED)


TERMINAL_TASK_STATUSES = frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED})
#: Tasks the pipeline still has to move on (listed, for ``status__in`` filters).
OPEN_TASK_STATUSES = (TaskStatus.QUEUED, TaskStatus.SUBMITTED, TaskStatus.PROCESSING)
#: Tasks a provider is working on: its concurrency cap counts them (imagen_assets.capacity).
IN_FLIGHT_TASK_STATUSES = frozenset({TaskStatus.SUBMITTED, TaskStatus.PROCESSING})
#: Images still waiting for their task or their file.
OPEN_IMAGE_STATUSES = (ImageStatus.QUEUED, ImageStatus.PROCESSING)
#: Images that ended without a file. Each of the three is its own outcome on every page and
#: count: "failed" (something went wrong: red), "withheld by provider" (its safety filter
#: held the image back: neutral, not billed) and "cancelled" (stopped on purpose: neutral).
ENDED_WITHOUT_FILE_STATUSES = (ImageStatus.FAILED, ImageStatus.FILTERED, ImageStatus.CANCELLED)
#: Images counted as "failed": only those that went wrong, never withheld or cancelled ones.
FAILED_IMAGE_STATUSES = (ImageStatus.FAILED,)

#: ``error_code`` of a task cancelled by a person after it may have reached its provider
#: (its submit was under way, or the provider had started it and cannot or would not
#: cancel it): the provider may still bill it, so its estimate stays counted against the
#: budget, though its result is never stored. A cancel that certainly costs nothing
#: (never sent, or refunded by the provider) records :data:`CANCELLED_UNBILLED`.
CANCELLED_MAY_BILL = "cancelled_may_bill"
CANCELLED_UNBILLED = "cancelled"

_RANK = {
    TaskStatus.QUEUED: 0,
    TaskStatus.SUBMITTED: 1,
    TaskStatus.PROCESSING: 2,
    TaskStatus.SUCCEEDED: 3,
    TaskStatus.FAILED: 3,
    TaskStatus.CANCELLED: 3,
}

#: What a task's open images become when the task reaches a state. A task that succeeded
#: is absent: its images are finished one by one by ``lifecycle.finish_image``.
IMAGE_STATUS_FOR_TASK = {
    TaskStatus.PROCESSING: ImageStatus.PROCESSING,
    TaskStatus.FAILED: ImageStatus.FAILED,
    TaskStatus.CANCELLED: ImageStatus.CANCELLED,
}


class BreakerState(models.TextChoices):
    """A provider's circuit breaker (:mod:`imagen_assets.breaker`): ``closed`` calls go
    through; ``open`` calls wait for a cool-down; ``half_open`` one probe call is under
    way and the others wait for its outcome."""

    CLOSED = "closed", _("Answering")
    OPEN = "open", _("Not answering")
    HALF_OPEN = "half_open", _("Being tried again")
