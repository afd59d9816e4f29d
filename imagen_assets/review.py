"""The approval workflow: decisions on images, and a campaign's sign-off.

The second state machine of the app (the first, the pipeline's, is
:mod:`imagen_assets.lifecycle`). Nothing else writes ``GeneratedImage.review_status``,
``review_round`` or ``Campaign.status``. Every function here is one transaction: it locks
the row it changes, checks every rule, and either records the change (an append-only
:class:`~imagen_assets.models.ReviewDecision`, the derived status, the activity log) or
raises :class:`ReviewError` saying why in plain words, having changed nothing.

An image's review, in rounds (``docs/workflow.md``, "The rules, precisely")::

    not ready ──ready──> pending ──reject──────────────> rejected
                            │──approve (n of required)──> pending
                            └──approve (required reached)> approved
    approved | rejected ──revoke (a reason)──> pending, in a new round

One approve or reject per reviewer per round; the first reject decides the round; an
image already decided refuses further decisions. A campaign::

    draft | changes_requested ──submit──> in_review ──sign off──> approved
    in_review ──request changes (a note)──> changes_requested
    any ──archive──> archived;  archived | approved ──reopen──> draft
    approved ──a revoke──> in_review
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from imagen_assets import activity, signals
from imagen_assets.activity import Actor, Verb
from imagen_assets.models import (
    Campaign,
    Comment,
    Export,
    GeneratedImage,
    ImageQuerySet,
    ReviewDecision,
    ShareLink,
)
from imagen_assets.status import (
    CLOSED_CAMPAIGN_STATUSES,
    CampaignStatus,
    Decision,
    ReviewStatus,
)

logger = logging.getLogger(__name__)

APP = "imagen_assets"
PERM_APPROVE = f"{APP}.approve_generatedimage"
PERM_REJECT = f"{APP}.reject_generatedimage"
PERM_REVOKE = f"{APP}.revoke_generatedimage"
PERM_SIGNOFF = f"{APP}.signoff_campaign"
PERM_POLICY = f"{APP}.change_review_policy"
PERM_CHANGE_CAMPAIGN = f"{APP}.change_campaign"
PERM_GENERATE = f"{APP}.generate_images"


class ReviewError(ValueError):
    """The decision or step was refused; nothing changed. The message is for the user."""


# -- who may decide ------------------------------------------------------------------------


def in_reviewer_group(user: Any, campaign: Campaign) -> bool:
    """Whether ``user`` belongs to the campaign's reviewer group (or it names none)."""
    if campaign.reviewer_group_id is None:
        return True
    return bool(user.groups.filter(pk=campaign.reviewer_group_id).exists())


def may_review(actor: Actor, campaign: Campaign, *, permission: str = PERM_APPROVE) -> bool:
    """Whether ``actor`` is an eligible reviewer of ``campaign`` holding ``permission``.

    A user needs the permission (superusers hold every one) and, when the campaign names a
    reviewer group, its membership (superusers too). An outside reviewer (an address) is
    eligible for a campaign only while a link of theirs to it is active.
    """
    if actor.user is None:
        return bool(actor.email) and (
            ShareLink.objects.filter(
                campaign=campaign,
                email__iexact=actor.email,
                revoked_at__isnull=True,
                expires_at__gt=timezone.now(),
            ).exists()
        )
    user = actor.user
    return bool(user.is_active and user.has_perm(permission) and in_reviewer_group(user, campaign))


def eligible_reviewers(campaign: Campaign, *, excluding: Any = None) -> QuerySet[Any]:
    """The active users who may review ``campaign`` (not ``excluding``)."""
    users = get_user_model().objects.with_perm(PERM_APPROVE, include_superusers=True)
    if campaign.reviewer_group_id is not None:
        users = users.filter(groups=campaign.reviewer_group_id)
    if excluding is not None:
        users = users.exclude(pk=excluding.pk)
    return users.distinct()


def same_reviewer(actor: Actor) -> Q:
    """Decisions by ``actor``: a user by id (a renamed user stays one reviewer), an outside
    reviewer by address."""
    if actor.user is not None:
        return Q(reviewer_id=actor.user_id)
    return Q(reviewer__isnull=True, reviewer_email__iexact=actor.email)


def _refuse(message: str, **params: Any) -> ReviewError:
    return ReviewError(message % params if params else message)


# -- image decisions -----------------------------------------------------------------------


def decide(
    image_id: int, decision: Decision | str, actor: Actor, *, note: str = ""
) -> GeneratedImage:
    """Record ``approve`` or ``reject`` by ``actor`` on a ready image and derive its status.

    Under a lock on the image row, so two reviewers deciding at once are serialised: both
    recorded while both are needed, the one arriving after the round was decided refused.
    """
    decision = Decision(decision)
    if decision is Decision.REVOKE:
        return revoke(image_id, actor, note=note)
    note = (note or "").strip()
    with transaction.atomic():
        image = _locked_image(image_id)
        campaign = image.campaign
        _check_open_for_decisions(image, campaign)
        permission = PERM_APPROVE if decision is Decision.APPROVE else PERM_REJECT
        if not may_review(actor, campaign, permission=permission):
            raise _refuse(
                _("%(who)s may not review images of %(campaign)s."),
                who=actor.label,
                campaign=campaign,
            )
        if (
            not campaign.allow_self_approval
            and actor.user is not None
            and image.task.requested_by_id == actor.user_id
        ):
            raise _refuse(
                _(
                    "Image #%(id)d was requested by you; another reviewer must decide "
                    "(%(campaign)s does not allow self-approval)."
                ),
                id=image.pk,
                campaign=campaign,
            )
        if image.review_status != ReviewStatus.PENDING:
            raise _refuse(
                _("Image #%(id)d was already %(status)s; reload to see the decision."),
                id=image.pk,
                status=image.get_review_status_display().lower(),
            )
        if round_decisions(image).filter(same_reviewer(actor)).exists():
            raise _refuse(_("You already decided on image #%(id)d in this round."), id=image.pk)
        if decision is Decision.REJECT and not note:
            raise _refuse(_("Say why the image is rejected."))

        row = ReviewDecision.objects.create(
            image=image,
            round=image.review_round,
            decision=decision,
            reviewer_id=actor.user_id,
            reviewer_email=actor.email.lower() if actor.user is None else "",
            reviewer_label=actor.label[:254],
            note=note,
        )
        if decision is Decision.REJECT:
            Comment.objects.create(
                image=image, author_id=actor.user_id, author_label=row.reviewer_label, text=note
            )
        status = _derive(image, campaign)
        if status != ReviewStatus.PENDING:
            image.review_status = status
            image.reviewed_by_id = actor.user_id
            image.reviewed_at = row.created_at
            image.review_note = note
            image.save(
                update_fields=[
                    "review_status",
                    "reviewed_by",
                    "reviewed_at",
                    "review_note",
                    "updated_at",
                ]
            )
            signal = (
                signals.image_approved
                if status == ReviewStatus.APPROVED
                else signals.image_rejected
            )
            signals.send_on_commit(signal, GeneratedImage, image=image, decision=row)
        activity.record(
            campaign,
            Verb.APPROVED if decision is Decision.APPROVE else Verb.REJECTED,
            actor,
            image=image,
            note=note,
        )
    logger.info("Image %s: %s by %s (%s)", image.pk, decision, actor.label, image.review_status)
    return image


def revoke(image_id: int, actor: Actor, *, note: str) -> GeneratedImage:
    """End the round of an approved or rejected image: back to pending, in a new round
    where earlier decisions no longer count. A reason is required; an approved campaign
    goes back to review; exports holding the image become stale."""
    note = (note or "").strip()
    with transaction.atomic():
        image = _locked_image(image_id)
        campaign = Campaign.objects.select_for_update().get(pk=image.campaign_id)
        image.campaign = campaign
        _check_open_for_decisions(image, campaign, revoking=True)
        if actor.user is None or not may_review(actor, campaign, permission=PERM_REVOKE):
            raise _refuse(
                _("%(who)s may not revoke reviews of %(campaign)s."),
                who=actor.label,
                campaign=campaign,
            )
        if image.review_status not in (ReviewStatus.APPROVED, ReviewStatus.REJECTED):
            raise _refuse(
                _("Image #%(id)d is not decided yet; there is nothing to revoke."), id=image.pk
            )
        if not note:
            raise _refuse(_("Say why the review of image #%(id)d is revoked."), id=image.pk)
        row = ReviewDecision.objects.create(
            image=image,
            round=image.review_round,
            decision=Decision.REVOKE,
            reviewer_id=actor.user_id,
            reviewer_label=actor.label[:254],
            note=note,
        )
        image.review_round += 1
        image.review_status = ReviewStatus.PENDING
        image.reviewed_by_id = None
        image.reviewed_at = None
        image.review_note = ""
        image.save(
            update_fields=[
                "review_round",
                "review_status",
                "reviewed_by",
                "reviewed_at",
                "review_note",
                "updated_at",
            ]
        )
        activity.record(campaign, Verb.REVOKED, actor, image=image, note=note)
        for export in Export.objects.filter(campaign=campaign, stale=False):
            if image.pk in export.image_ids:
                Export.objects.filter(pk=export.pk).update(stale=True)
        if campaign.status == CampaignStatus.APPROVED:
            _move(
                campaign,
                CampaignStatus.IN_REVIEW,
                actor,
                Verb.BACK_IN_REVIEW,
                note=_("Back in review: the approval of image #%(id)d was revoked (%(why)s).")
                % {"id": image.pk, "why": note},
            )
        signals.send_on_commit(signals.image_revoked, GeneratedImage, image=image, decision=row)
    return image


def comment(image_id: int, actor: Actor, text: str) -> Comment:
    """Add a note to an image's thread (any reviewer, the requester, an outside reviewer)."""
    text = (text or "").strip()
    if not text:
        raise ReviewError(_("Write a comment."))
    with transaction.atomic():
        try:
            image = GeneratedImage.objects.select_related("campaign", "task").get(pk=image_id)
        except GeneratedImage.DoesNotExist:
            raise _refuse(_("There is no image #%(id)d."), id=image_id) from None
        # An outside reviewer (an address) only while their link to the campaign works.
        allowed = (
            may_review(actor, image.campaign)
            if actor.user is None
            else (
                actor.user.is_active
                and (
                    actor.user.has_perm(f"{APP}.view_generatedimage")
                    or may_review(actor, image.campaign)
                    or image.task.requested_by_id == actor.user_id
                )
            )
        )
        if not allowed:
            raise _refuse(_("%(who)s may not comment on this image."), who=actor.label)
        if image.campaign.status == CampaignStatus.ARCHIVED:
            raise _refuse(_("%(campaign)s is archived."), campaign=image.campaign)
        row = Comment.objects.create(
            image=image, author_id=actor.user_id, author_label=actor.label[:254], text=text
        )
        activity.record(image.campaign, Verb.COMMENTED, actor, image=image, note=text)
    return row


def _locked_image(image_id: int) -> GeneratedImage:
    try:
        return (
            GeneratedImage.objects.select_for_update(of=("self",))
            .select_related("campaign", "task")
            .get(pk=image_id)
        )
    except GeneratedImage.DoesNotExist:
        raise _refuse(_("There is no image #%(id)d."), id=image_id) from None


def _check_open_for_decisions(
    image: GeneratedImage, campaign: Campaign, *, revoking: bool = False
) -> None:
    if campaign.status == CampaignStatus.ARCHIVED:
        raise _refuse(
            _("%(campaign)s is archived; nothing can be decided in it."), campaign=campaign
        )
    # A signed-off set is frozen: only a revoke (which sends it back to review) touches it.
    if campaign.status == CampaignStatus.APPROVED and not revoking:
        raise _refuse(
            _("%(campaign)s is signed off; revoke an approval or reopen it to review again."),
            campaign=campaign,
        )
    if not image.is_reviewable:
        raise _refuse(
            _("Image #%(id)d is not ready (%(status)s); only finished images can be reviewed."),
            id=image.pk,
            status=image.get_status_display(),
        )


def round_decisions(image: GeneratedImage) -> QuerySet[ReviewDecision]:
    """The approve and reject decisions of ``image``'s current round, oldest first."""
    return ReviewDecision.objects.filter(
        image=image,
        round=image.review_round,
        decision__in=[Decision.APPROVE, Decision.REJECT],
    )


def _derive(image: GeneratedImage, campaign: Campaign) -> ReviewStatus:
    """What the current round's decisions say: rejected at the first reject, approved
    with ``required_approvals`` approvals, else pending."""
    counts = {row["decision"]: row["n"] for row in _counts(image)}
    if counts.get(Decision.REJECT, 0):
        return ReviewStatus.REJECTED
    if counts.get(Decision.APPROVE, 0) >= campaign.required_approvals:
        return ReviewStatus.APPROVED
    return ReviewStatus.PENDING


def _counts(image: GeneratedImage) -> Any:
    return round_decisions(image).values("decision").annotate(n=Count("pk")).order_by()


# -- the campaign --------------------------------------------------------------------------

#: The campaign steps, each with the states it starts from (the diagram at the top).
STEPS_FROM: dict[str, tuple[CampaignStatus, ...]] = {
    "submit": (CampaignStatus.DRAFT, CampaignStatus.CHANGES_REQUESTED),
    "sign_off": (CampaignStatus.IN_REVIEW,),
    "request_changes": (CampaignStatus.IN_REVIEW,),
    "archive": (
        CampaignStatus.DRAFT,
        CampaignStatus.IN_REVIEW,
        CampaignStatus.CHANGES_REQUESTED,
        CampaignStatus.APPROVED,
    ),
    "reopen": (CampaignStatus.ARCHIVED, CampaignStatus.APPROVED),
}


def submit(campaign_id: int, actor: Actor) -> Campaign:
    """``draft | changes_requested -> in_review``: the reviewers are told."""
    with transaction.atomic():
        campaign = _locked_campaign(campaign_id)
        require(actor, PERM_CHANGE_CAMPAIGN, _("submit campaigns for review"))
        if campaign.status not in STEPS_FROM["submit"]:
            raise _refuse(
                _(
                    "%(campaign)s is %(status)s; only a draft or a campaign with changes "
                    "requested can be submitted."
                ),
                campaign=campaign,
                status=campaign.get_status_display().lower(),
            )
        if not campaign.images.filter(status=GeneratedImage.Status.SUCCEEDED).exists():
            raise _refuse(_("%(campaign)s has no ready image to review yet."), campaign=campaign)
        shortest = _smallest_reviewer_pool(campaign)
        if shortest is not None and shortest < campaign.required_approvals:
            raise _refuse(
                _(
                    "%(campaign)s needs %(required)d approvals per image but only "
                    "%(available)d eligible reviewer(s) other than the person who asked for "
                    "an image exist."
                )
                if not campaign.allow_self_approval
                else _(
                    "%(campaign)s needs %(required)d approvals per image but only "
                    "%(available)d eligible reviewer(s) exist."
                ),
                campaign=campaign,
                required=campaign.required_approvals,
                available=shortest,
            )
        campaign.submitted_by_id = actor.user_id
        campaign.submitted_at = timezone.now()
        campaign.save(update_fields=["submitted_by", "submitted_at", "updated_at"])
        _move(campaign, CampaignStatus.IN_REVIEW, actor, Verb.SUBMITTED)
    return campaign


def _smallest_reviewer_pool(campaign: Campaign) -> int | None:
    """How many reviewers may decide the worst-served image still pending review: the
    eligible users (less its requester, four eyes) plus outside reviewers with an active
    link; None when nothing is pending."""
    requesters = set(campaign.images.pending_review().values_list("task__requested_by", flat=True))
    if not requesters:
        return None
    eligible = set(eligible_reviewers(campaign).values_list("pk", flat=True))
    outside = (
        ShareLink.objects.filter(
            campaign=campaign, revoked_at__isnull=True, expires_at__gt=timezone.now()
        )
        .values("email")
        .distinct()
        .count()
    )
    if campaign.allow_self_approval:
        return len(eligible) + outside
    return min(len(eligible - {requester}) for requester in requesters) + outside


def sign_off(campaign_id: int, actor: Actor, *, note: str = "") -> Campaign:
    """``in_review -> approved``: nothing pending, at least one approved; four eyes."""
    with transaction.atomic():
        campaign = _locked_campaign(campaign_id)
        _check_signoff(campaign, actor)
        if campaign.images.pending_review().exists():
            pending = campaign.images.pending_review().count()
            raise _refuse(
                _("%(count)d image(s) of %(campaign)s still wait for review."),
                count=pending,
                campaign=campaign,
            )
        if campaign.images.unfinished().exists():
            raise _refuse(
                _(
                    "%(campaign)s still has images being generated; sign it off once they "
                    "are ready and reviewed."
                ),
                campaign=campaign,
            )
        if not campaign.images.approved().exists():
            raise _refuse(_("%(campaign)s has no approved image."), campaign=campaign)
        _move(campaign, CampaignStatus.APPROVED, actor, Verb.SIGNED_OFF, note=(note or "").strip())
    return campaign


def request_changes(campaign_id: int, actor: Actor, *, note: str) -> Campaign:
    """``in_review -> changes_requested``, with a note for the team."""
    note = (note or "").strip()
    with transaction.atomic():
        campaign = _locked_campaign(campaign_id)
        _check_signoff(campaign, actor)
        if not note:
            raise _refuse(_("Say what should change in %(campaign)s."), campaign=campaign)
        _move(campaign, CampaignStatus.CHANGES_REQUESTED, actor, Verb.CHANGES_REQUESTED, note=note)
    return campaign


def archive(campaign_id: int, actor: Actor, *, note: str = "") -> Campaign:
    """Any state ``-> archived``: nothing more is generated or decided."""
    with transaction.atomic():
        campaign = _locked_campaign(campaign_id)
        require(actor, PERM_CHANGE_CAMPAIGN, _("archive campaigns"))
        if campaign.status not in STEPS_FROM["archive"]:
            raise _refuse(_("%(campaign)s is already archived."), campaign=campaign)
        _move(campaign, CampaignStatus.ARCHIVED, actor, Verb.ARCHIVED, note=(note or "").strip())
    return campaign


def reopen(campaign_id: int, actor: Actor, *, note: str = "") -> Campaign:
    """``archived | approved -> draft``; approved images stay approved."""
    with transaction.atomic():
        campaign = _locked_campaign(campaign_id)
        require(actor, PERM_CHANGE_CAMPAIGN, _("reopen campaigns"))
        if campaign.status not in STEPS_FROM["reopen"]:
            raise _refuse(
                _(
                    "%(campaign)s is %(status)s; only an approved or archived campaign can be "
                    "reopened."
                ),
                campaign=campaign,
                status=campaign.get_status_display().lower(),
            )
        _move(campaign, CampaignStatus.DRAFT, actor, Verb.REOPENED, note=(note or "").strip())
    return campaign


def set_policy(
    campaign_id: int,
    actor: Actor,
    *,
    required_approvals: int | None = None,
    reviewer_group: Any = ...,
    allow_self_approval: bool | None = None,
) -> Campaign:
    """Change who reviews and how many must approve; not while the campaign is in review.
    ``reviewer_group``: a Group, None for anyone, or left out to keep it."""
    with transaction.atomic():
        campaign = _locked_campaign(campaign_id)
        require(actor, PERM_POLICY, _("change review policies"))
        if campaign.status == CampaignStatus.IN_REVIEW:
            raise _refuse(
                _("%(campaign)s is in review; its policy can change once it is decided."),
                campaign=campaign,
            )
        if required_approvals is not None:
            if not 1 <= required_approvals <= 10:
                raise _refuse(_("Ask for 1 to 10 approvals per image."))
            campaign.required_approvals = required_approvals
        if reviewer_group is not ...:
            campaign.reviewer_group = reviewer_group
        if allow_self_approval is not None:
            campaign.allow_self_approval = allow_self_approval
        campaign.save(
            update_fields=[
                "required_approvals",
                "reviewer_group",
                "allow_self_approval",
                "updated_at",
            ]
        )
        group = campaign.reviewer_group.name if campaign.reviewer_group else _("anyone")
        activity.record(
            campaign,
            Verb.POLICY_CHANGED,
            actor,
            note=_("%(n)d approval(s), reviewers: %(group)s, self-approval %(self)s")
            % {
                "n": campaign.required_approvals,
                "group": group,
                "self": _("allowed") if campaign.allow_self_approval else _("not allowed"),
            },
        )
    return campaign


def check_open_for_generation(campaign: Campaign) -> None:
    """Refuse new images in an approved or archived campaign (a signed-off set is frozen)."""
    if campaign.status in CLOSED_CAMPAIGN_STATUSES:
        raise _refuse(
            _("%(campaign)s is %(status)s; reopen it to generate more images."),
            campaign=campaign,
            status=campaign.get_status_display().lower(),
        )


def check_may_generate(actor: Actor) -> None:
    """Refuse unless ``actor`` is an active user holding the generate permission."""
    require(actor, PERM_GENERATE, _("generate images"))


def locked_campaign_for(campaign_id: int, actor: Actor, permission: str, what: str) -> Campaign:
    """The campaign, locked until the transaction ends, once ``actor`` is shown to be an
    active user holding ``permission`` (else a :class:`ReviewError`: "who may not ``what``").

    For the workflow's other services (sharing, export) that act on a whole campaign.
    """
    require(actor, permission, what)
    return _locked_campaign(campaign_id)


def _locked_campaign(campaign_id: int) -> Campaign:
    try:
        return Campaign.objects.select_for_update().get(pk=campaign_id)
    except Campaign.DoesNotExist:
        raise _refuse(_("There is no campaign #%(id)d."), id=campaign_id) from None


def require(actor: Actor, permission: str, what: str) -> None:
    """Refuse (saying ``what`` may not be done) unless ``actor`` is an active user with
    ``permission``."""
    if actor.user is None or not (actor.user.is_active and actor.user.has_perm(permission)):
        raise _refuse(_("%(who)s may not %(what)s."), who=actor.label, what=what)


def _check_signoff(campaign: Campaign, actor: Actor) -> None:
    if campaign.status not in STEPS_FROM["sign_off"]:
        raise _refuse(
            _("%(campaign)s is %(status)s, not in review."),
            campaign=campaign,
            status=campaign.get_status_display().lower(),
        )
    if actor.user is None or not may_review(actor, campaign, permission=PERM_SIGNOFF):
        raise _refuse(
            _("%(who)s may not sign off %(campaign)s."), who=actor.label, campaign=campaign
        )
    if (
        not campaign.allow_self_approval
        and campaign.submitted_by_id is not None
        and campaign.submitted_by_id == actor.user_id
    ):
        raise _refuse(
            _(
                "You submitted %(campaign)s; someone else must sign it off (it does not "
                "allow self-approval)."
            ),
            campaign=campaign,
        )


def _move(
    campaign: Campaign, new: CampaignStatus, actor: Actor, verb: Verb, *, note: str = ""
) -> None:
    old = CampaignStatus(campaign.status)
    campaign.status = new
    campaign.save(update_fields=["status", "updated_at"])
    activity.record(campaign, verb, actor, note=note)
    signals.send_on_commit(
        signals.campaign_status_changed,
        Campaign,
        campaign=campaign,
        old=old,
        new=new,
        actor=actor.label,
    )


# -- what waits for whom, and what may be done next --------------------------------------------


def waiting_for(actor: Actor, *, campaign: Campaign | int | None = None) -> ImageQuerySet:
    """The images waiting for ``actor``'s decision: the one rule of the review screen and of
    the admin index count.

    Ready images pending in their current round, in campaigns that are not archived, where
    ``actor`` is an eligible reviewer (:func:`may_review`, judged in SQL for every
    campaign at once), has not decided in this round, and did not request the image unless
    its campaign allows self-approval. An outside reviewer (no user) has only the campaign
    of their link, which must be given. One query, whatever the number of campaigns.
    """
    images = GeneratedImage.objects.pending_review().exclude(
        campaign__status=CampaignStatus.ARCHIVED
    )
    if campaign is not None:
        images = images.filter(campaign=campaign)
    mine = ReviewDecision.objects.filter(
        same_reviewer(actor),
        image=OuterRef("pk"),
        round=OuterRef("review_round"),
        decision__in=[Decision.APPROVE, Decision.REJECT],
    )
    images = images.exclude(Exists(mine))
    user = actor.user
    if user is None:
        return images if actor.email and campaign is not None else images.none()
    if not (user.is_active and user.has_perm(PERM_APPROVE)):
        return images.none()
    # Group membership applies to superusers too (docs/workflow.md, "Who").
    return images.filter(
        Q(campaign__reviewer_group__isnull=True)
        | Q(campaign__reviewer_group__in=user.groups.values("pk"))
    ).filter(Q(campaign__allow_self_approval=True) | ~Q(task__requested_by=user))


def keep(image_id: int, others: Iterable[int], actor: Actor, *, note: str) -> GeneratedImage:
    """Approve ``image_id`` and reject each of ``others`` with ``note``, all or nothing.

    "Keep this one, reject the others" of a request's variants: one transaction, so a
    refusal of any decision (:func:`decide`'s rules) leaves every image as it was.
    """
    note = (note or "").strip()
    rejected = [pk for pk in dict.fromkeys(others) if pk != image_id]
    if rejected and not note:
        raise ReviewError(_("Say why the other images are rejected."))
    with transaction.atomic():
        kept = decide(image_id, Decision.APPROVE, actor)
        for pk in rejected:
            decide(pk, Decision.REJECT, actor, note=note)
    return kept


def available_steps(campaign: Campaign, actor: Actor) -> list[str]:
    """The campaign steps ``actor`` may take from the campaign's current state, by state and
    permission (what the admin offers as buttons). The step itself still checks the rest,
    such as images still pending, and says why when it refuses."""
    steps = []
    for step, sources in STEPS_FROM.items():
        if campaign.status not in sources:
            continue
        try:
            if step in ("sign_off", "request_changes"):
                _check_signoff(campaign, actor)
            else:
                require(actor, PERM_CHANGE_CAMPAIGN, step)
        except ReviewError:
            continue
        steps.append(step)
    return steps


__all__ = [
    "ReviewError",
    "archive",
    "available_steps",
    "check_may_generate",
    "comment",
    "decide",
    "eligible_reviewers",
    "keep",
    "locked_campaign_for",
    "may_review",
    "reopen",
    "request_changes",
    "revoke",
    "round_decisions",
    "set_policy",
    "sign_off",
    "submit",
    "waiting_for",
]
