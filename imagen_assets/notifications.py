"""E-mail about the approval workflow, sent by an RQ job after commit, never in a request.

:func:`queue_for_activity` listens to :data:`~imagen_assets.signals.activity_recorded`
(sent once the step's transaction commits) and queues one :func:`send_for_activity` job for
each step that notifies. The job reads the activity row, works out who is told
(``docs/workflow.md``, "E-mail")::

    submitted            the eligible reviewers, except whoever submitted
    approved | rejected  once every image of a request is decided: one summary to its requester
    signed off           the submitter and the owner
    changes requested    the submitter and the owner
    revoked              the image's requester and the owner
    commented            the image's requester and earlier commenters, never the author
    exported             whoever asked for the export
    shared               the outside reviewer, with their link

and sends one message to each address (plain text and HTML, from the templates in
``imagen_assets/email/``). Nobody without an address or with an inactive account is
mailed, and nobody twice. ``IMAGEN_ASSETS["NOTIFICATIONS"] = False`` turns all of it off.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.core.mail import EmailMultiAlternatives, get_connection
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.formats import date_format
from django.utils.timezone import localtime
from django.utils.translation import gettext as _

from imagen_assets import conf, queueing, review, sharing
from imagen_assets.activity import Verb
from imagen_assets.models import Activity, Campaign, Comment, GeneratedImage
from imagen_assets.status import ImageStatus, ReviewStatus

logger = logging.getLogger(__name__)

#: The job, queued by its path like every job.
JOB = "imagen_assets.notifications.send_for_activity"

#: The steps somebody is told about; every other verb sends nothing.
NOTIFYING_VERBS = frozenset(
    {
        Verb.SUBMITTED,
        Verb.APPROVED,
        Verb.REJECTED,
        Verb.SIGNED_OFF,
        Verb.CHANGES_REQUESTED,
        Verb.REVOKED,
        Verb.COMMENTED,
        Verb.EXPORTED,
        Verb.SHARED,
    }
)

#: Redis keys claiming a request's summary: one per request and set of review rounds, so a
#: summary goes out once however many decision jobs see the request fully decided, and
#: again only after a revoke opened a new round and it was decided anew.
SUMMARY_KEY = "imagen_assets:mail:summary:{task}:{rounds}"
SUMMARY_KEY_TTL = 90 * 24 * 3600


def queue_for_activity(sender: Any, activity: Activity, **kwargs: Any) -> None:
    """Receiver of ``activity_recorded`` (sent after commit): queue the job for a step that
    notifies, when notifications are on. Sends nothing itself."""
    if conf.get("NOTIFICATIONS") and activity.verb in NOTIFYING_VERBS:
        queueing.enqueue(JOB, activity.pk)


def send_for_activity(activity_id: int) -> int:
    """The job: mail whoever the step recorded as ``activity_id`` concerns. Returns the
    number of messages sent (0 when notifications are off, the row is gone, or nobody is
    to be told). An SMTP failure raises, so RQ records the job as failed."""
    if not conf.get("NOTIFICATIONS"):
        return 0
    try:
        row = Activity.objects.select_related("campaign", "image__task").get(pk=activity_id)
    except Activity.DoesNotExist:
        return 0
    compose = _COMPOSERS.get(Verb(row.verb))
    if compose is None:
        return 0
    notice = compose(row)
    if notice is None:
        return 0
    addresses = _addresses(notice.recipients, never=notice.never)
    addresses += [a for a in notice.addresses if a.lower() not in {b.lower() for b in addresses}]
    if not addresses:
        return 0
    try:
        sent = _send(notice, addresses)
    except BaseException:
        if notice.release is not None:
            notice.release()  # unsent: the job's retry (or the next decision) may claim again
        raise
    logger.info("Mail about %s (activity %s) to %d address(es)", row.verb, row.pk, sent)
    return sent


# -- what is said, to whom ----------------------------------------------------------------


@dataclass
class Notice:
    """One message: what it says and who receives it."""

    campaign: Campaign
    recipients: list[Any]
    subject: str
    headline: str
    #: (label, text) pairs shown under the headline: a note, a reason, a prompt.
    details: list[tuple[str, str]] = field(default_factory=list)
    #: One line per image, for the request summary.
    items: list[str] = field(default_factory=list)
    #: The admin path the message links to (made absolute with SITE_URL).
    path: str = ""
    #: Addresses without an account (an outside reviewer's).
    addresses: list[str] = field(default_factory=list)
    #: An absolute link given as it is (an outside reviewer's page), instead of ``path``.
    url: str | None = None
    #: A user never mailed about this step (a comment's author).
    never: Any = None
    #: Undoes the summary's claim if the message could not be sent.
    release: Callable[[], object] | None = None


def _submitted(row: Activity) -> Notice | None:
    campaign = row.campaign
    waiting = campaign.images.pending_review().count()
    return Notice(
        campaign=campaign,
        recipients=list(review.eligible_reviewers(campaign, excluding=row.actor)),
        subject=_("%(campaign)s waits for your review") % {"campaign": campaign},
        headline=_(
            "%(who)s submitted %(campaign)s for review; %(count)d image(s) wait for a decision."
        )
        % {"who": row.actor_label, "campaign": campaign, "count": waiting},
        details=_note(_("Note"), row.note),
        path=campaign.get_absolute_url(),
    )


def _decided(row: Activity) -> Notice | None:
    """The summary of a request, once every image of it is decided (see SUMMARY_KEY)."""
    if row.image is None:
        return None
    task = row.image.task
    images = list(GeneratedImage.objects.filter(task=task).order_by("index"))
    if any(image.status in GeneratedImage.OPEN_STATUSES for image in images):
        return None  # still generating: the request is not complete
    reviewable = [image for image in images if image.status == ImageStatus.SUCCEEDED]
    decided = (ReviewStatus.APPROVED, ReviewStatus.REJECTED)
    if not reviewable or any(image.review_status not in decided for image in reviewable):
        return None
    if task.requested_by_id is None:
        return None
    release = _claim_summary(task.pk, reviewable)
    if release is None:
        return None  # another decision's job sent this summary
    campaign = row.campaign
    approved = sum(image.review_status == ReviewStatus.APPROVED for image in reviewable)
    items = []
    for image in reviewable:
        line = _("Image #%(id)d: %(status)s") % {
            "id": image.pk,
            "status": image.get_review_status_display(),
        }
        if image.review_status == ReviewStatus.REJECTED and image.review_note:
            line = _("%(line)s (%(reason)s)") % {"line": line, "reason": image.review_note}
        items.append(line)
    return Notice(
        campaign=campaign,
        recipients=[task.requested_by],
        subject=_("Your images in %(campaign)s are reviewed") % {"campaign": campaign},
        headline=_(
            "Every image you requested in %(campaign)s is reviewed: %(approved)d approved, "
            "%(rejected)d rejected."
        )
        % {"campaign": campaign, "approved": approved, "rejected": len(reviewable) - approved},
        details=_note(_("Prompt"), task.prompt),
        items=items,
        path=campaign.get_absolute_url(),
        release=release,
    )


def _signed_off(row: Activity) -> Notice | None:
    campaign = row.campaign
    return Notice(
        campaign=campaign,
        recipients=[campaign.submitted_by, campaign.created_by],
        subject=_("%(campaign)s is signed off") % {"campaign": campaign},
        headline=_("%(who)s signed off %(campaign)s; its %(count)d approved image(s) may be used.")
        % {
            "who": row.actor_label,
            "campaign": campaign,
            "count": campaign.images.approved().count(),
        },
        details=_note(_("Note"), row.note),
        path=campaign.get_absolute_url(),
    )


def _changes_requested(row: Activity) -> Notice | None:
    campaign = row.campaign
    return Notice(
        campaign=campaign,
        recipients=[campaign.submitted_by, campaign.created_by],
        subject=_("Changes requested in %(campaign)s") % {"campaign": campaign},
        headline=_("%(who)s asked for changes in %(campaign)s.")
        % {"who": row.actor_label, "campaign": campaign},
        details=_note(_("What should change"), row.note),
        path=campaign.get_absolute_url(),
    )


def _revoked(row: Activity) -> Notice | None:
    image = row.image
    if image is None:
        return None
    campaign = row.campaign
    return Notice(
        campaign=campaign,
        recipients=[image.task.requested_by, campaign.created_by],
        subject=_("The review of image #%(id)d in %(campaign)s was revoked")
        % {"id": image.pk, "campaign": campaign},
        headline=_(
            "%(who)s revoked the review of image #%(id)d in %(campaign)s; it waits for "
            "review again."
        )
        % {"who": row.actor_label, "id": image.pk, "campaign": campaign},
        details=_note(_("Why"), row.note),
        path=_image_path(image),
    )


def _commented(row: Activity) -> Notice | None:
    image = row.image
    if image is None:
        return None
    campaign = row.campaign
    earlier = (
        Comment.objects.filter(
            image=image, author__isnull=False, created_at__lte=row.created_at
        ).select_related("author")
        # The author is left out below, whether they wrote earlier comments or not.
    )
    return Notice(
        campaign=campaign,
        recipients=[image.task.requested_by, *(comment.author for comment in earlier)],
        subject=_("New comment on image #%(id)d in %(campaign)s")
        % {"id": image.pk, "campaign": campaign},
        headline=_("%(who)s commented on image #%(id)d in %(campaign)s.")
        % {"who": row.actor_label, "id": image.pk, "campaign": campaign},
        details=_note(_("Comment"), row.note),
        path=_image_path(image),
        never=row.actor,
    )


def _exported(row: Activity) -> Notice | None:
    campaign = row.campaign
    return Notice(
        campaign=campaign,
        recipients=[row.actor],
        subject=_("Your export of %(campaign)s is ready") % {"campaign": campaign},
        headline=_(
            "The approved images of %(campaign)s are exported; download them from the "
            "campaign's page."
        )
        % {"campaign": campaign},
        details=_note(_("Export"), row.note),
        path=campaign.get_absolute_url(),
    )


def _shared(row: Activity) -> Notice | None:
    """The invitation: the outside reviewer's link, to their address (while it works)."""
    link = sharing.link_for_activity(row)
    if link is None or not link.active:
        return None
    campaign = row.campaign
    return Notice(
        campaign=campaign,
        recipients=[],
        addresses=[link.email],
        subject=_("Please review the images of %(campaign)s") % {"campaign": campaign},
        headline=_(
            "%(who)s asks you to review the images of %(campaign)s. The link below opens "
            "them; no account is needed. It works until %(until)s."
        )
        % {
            "who": row.actor_label,
            "campaign": campaign,
            "until": date_format(localtime(link.expires_at), "DATETIME_FORMAT"),
        },
        url=sharing.link_url(link),
    )


_COMPOSERS = {
    Verb.SUBMITTED: _submitted,
    Verb.APPROVED: _decided,
    Verb.REJECTED: _decided,
    Verb.SIGNED_OFF: _signed_off,
    Verb.CHANGES_REQUESTED: _changes_requested,
    Verb.REVOKED: _revoked,
    Verb.COMMENTED: _commented,
    Verb.EXPORTED: _exported,
    Verb.SHARED: _shared,
}


def _note(label: str, text: str) -> list[tuple[str, str]]:
    text = (text or "").strip()
    return [(label, text)] if text else []


def _image_path(image: GeneratedImage) -> str:
    return reverse("admin:imagen_assets_generatedimage_change", args=[image.pk])


def _addresses(users: Iterable[Any], *, never: Any = None) -> list[str]:
    """The addresses of ``users`` in order: active accounts with an address, each address
    once (compared case-insensitively), never ``never``'s."""
    seen: set[str] = set()
    result: list[str] = []
    for user in users:
        if user is None or not user.is_active or (never is not None and user.pk == never.pk):
            continue
        address = (getattr(user, user.get_email_field_name(), "") or "").strip()
        if address and address.lower() not in seen:
            seen.add(address.lower())
            result.append(address)
    return result


def _claim_summary(task_id: int, images: list[GeneratedImage]) -> Callable[[], object] | None:
    """Claim the summary of request ``task_id`` as decided now; a function undoing the
    claim, or None when another job claimed it first.

    Two decisions on the last two open images of a request commit in any order, so each
    of their jobs may be the first to see the request complete: the claim, atomic in
    Redis, lets exactly one of them send.
    """
    rounds = ",".join(f"{image.pk}.{image.review_round}" for image in images)
    digest = hashlib.sha256(rounds.encode()).hexdigest()[:16]
    return queueing.claim_once(SUMMARY_KEY.format(task=task_id, rounds=digest), SUMMARY_KEY_TTL)


# -- the message --------------------------------------------------------------------------


def _send(notice: Notice, addresses: list[str]) -> int:
    """One message per address (so no recipient sees the others'), sent on one connection."""
    context = {
        "campaign": notice.campaign,
        "headline": notice.headline,
        "details": notice.details,
        "items": notice.items,
        "link": notice.url or (conf.site_link(notice.path) if notice.path else None),
    }
    text = render_to_string("imagen_assets/email/notification.txt", context)
    html = render_to_string("imagen_assets/email/notification.html", context)
    # A header may not span lines; a campaign name or note never breaks the subject.
    subject = " ".join((_("[Campaign images] %(subject)s") % {"subject": notice.subject}).split())
    messages = []
    for address in addresses:
        message = EmailMultiAlternatives(subject, text, to=[address])
        message.attach_alternative(html, "text/html")
        messages.append(message)
    with get_connection() as connection:
        return int(connection.send_messages(messages) or 0)
