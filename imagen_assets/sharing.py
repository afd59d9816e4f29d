"""Outside reviewers: a signed, expiring link to one campaign's review, for one address.

A :class:`~imagen_assets.models.ShareLink` row is the truth (whom, which campaign, until
when, revoked or not); the token in the link is that row's id signed with Django's
signing under a salt of its own, so it cannot be guessed, forged or moved to another row,
and it carries nothing else. A token is honoured only while its row is active (not
expired, not revoked) and never once its signature is older than the longest lifetime a
link can have (``MAX_DAYS``). The page itself is
:mod:`imagen_assets.outside`; the e-mail with the link is sent by the notifications, which
listen to the ``shared`` activity (:func:`link_for_activity` finds its link).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.core import signing
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from imagen_assets import activity, conf, review
from imagen_assets.activity import Actor, Verb
from imagen_assets.models import Activity, ShareLink
from imagen_assets.review import ReviewError
from imagen_assets.status import CampaignStatus

PERM_SHARE = f"{review.APP}.share_campaign"
#: Keeps these tokens from being valid anywhere else Django's signing is used.
SALT = "imagen_assets.sharing.link"
DEFAULT_DAYS = 7
MAX_DAYS = 90


class InvalidLink(Exception):
    """The token is not one of ours: malformed, tampered with, or its link is gone."""


class ExpiredLink(InvalidLink):
    """The token is genuine but its link has expired or was revoked."""


@dataclass(frozen=True)
class Shared:
    """A link just created, with the address to send."""

    link: ShareLink
    url: str


def share(campaign_id: int, actor: Actor, email: str, days: int = DEFAULT_DAYS) -> Shared:
    """Invite ``email`` to review ``campaign_id`` for ``days`` days.

    Needs the share permission; refused in an archived campaign (nothing can be decided
    there). Creates the link and records the ``shared`` activity in one transaction.
    """
    email = (email or "").strip().lower()  # one person, one reviewer: case must not count
    try:
        validate_email(email)
    except ValidationError:
        raise ReviewError(_("“%(email)s” is not an e-mail address.") % {"email": email}) from None
    if not 1 <= days <= MAX_DAYS:
        raise ReviewError(_("A link lasts 1 to %(max)d days.") % {"max": MAX_DAYS})
    with transaction.atomic():
        campaign = review.locked_campaign_for(
            campaign_id, actor, PERM_SHARE, _("invite outside reviewers")
        )
        if campaign.status == CampaignStatus.ARCHIVED:
            raise ReviewError(
                _("%(campaign)s is archived; nothing can be reviewed in it.")
                % {"campaign": campaign}
            )
        now = timezone.now()
        link = ShareLink.objects.create(
            campaign=campaign,
            email=email,
            created_by_id=actor.user_id,
            created_at=now,
            expires_at=now + timedelta(days=days),
        )
        activity.record(campaign, Verb.SHARED, actor, note=email)
    return Shared(link=link, url=link_url(link))


def revoke_link(link_id: int, actor: Actor) -> ShareLink:
    """Withdraw a link at once (share permission); records ``share_revoked``."""
    with transaction.atomic():
        try:
            link = ShareLink.objects.select_for_update().get(pk=link_id)
        except ShareLink.DoesNotExist:
            raise ReviewError(
                _("There is no outside reviewer link #%(id)d.") % {"id": link_id}
            ) from None
        campaign = review.locked_campaign_for(
            link.campaign_id, actor, PERM_SHARE, _("revoke outside reviewers' links")
        )
        if link.revoked_at is not None:
            raise ReviewError(
                _("The link of %(email)s to %(campaign)s was already revoked.")
                % {"email": link.email, "campaign": campaign}
            )
        link.revoked_at = timezone.now()
        link.save(update_fields=["revoked_at"])
        activity.record(campaign, Verb.SHARE_REVOKED, actor, note=link.email)
    return link


def token_for(link: ShareLink) -> str:
    """The token of ``link``'s address: its id, signed (URL-safe, no slashes)."""
    return signing.dumps(link.pk, salt=SALT)


def link_for_token(token: str) -> ShareLink:
    """The active link ``token`` stands for (with its campaign).

    Raises :class:`InvalidLink` for anything not signed by us (or a deleted link), and
    :class:`ExpiredLink` for a genuine token whose link expired or was revoked.
    """
    try:
        # No token works longer than the longest link can last, whatever its row says.
        link_id = signing.loads(token, salt=SALT, max_age=timedelta(days=MAX_DAYS))
    except signing.SignatureExpired:
        raise ExpiredLink from None
    except signing.BadSignature:
        raise InvalidLink from None
    if not isinstance(link_id, int):
        raise InvalidLink
    link = ShareLink.objects.select_related("campaign").filter(pk=link_id).first()
    if link is None:
        raise InvalidLink
    # The link's own expiry: a token is signed when the link is made or later, so this is
    # the signature's max_age measured from the link, and revoking ends it at once.
    if not link.active:
        raise ExpiredLink
    return link


def link_url(link: ShareLink) -> str:
    """The address to send: absolute when ``IMAGEN_ASSETS["SITE_URL"]`` is set, else the
    site-relative path."""
    path = reverse("imagen_assets:outside_review", args=[token_for(link)])
    return conf.site_link(path) or path


def link_for_activity(row: Activity) -> ShareLink | None:
    """The link a ``shared`` activity row recorded (its note is the address), for the
    notification that sends it."""
    if row.verb != Verb.SHARED:
        return None
    return (
        ShareLink.objects.filter(
            campaign_id=row.campaign_id, email=row.note, created_at__lte=row.created_at
        )
        .order_by("-created_at", "-pk")
        .first()
    )
