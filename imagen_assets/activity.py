"""The activity log: one append-only row per event of a campaign and its images.

Every module that changes something a person cares about (the pipeline, reviews, exports,
shared links) records it here, inside its own transaction. Actions by a user also get a
``LogEntry``, so the admin's History pages are true. After the transaction commits,
:data:`imagen_assets.signals.activity_recorded` is sent (notifications listen to it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib.admin.models import CHANGE, LogEntry
from django.db import models, transaction

from imagen_assets import signals
from imagen_assets.models import Activity, Campaign, GeneratedImage

Verb = Activity.Verb

#: The actor label of what the workers do on their own.
SYSTEM = "system"


@dataclass(frozen=True)
class Actor:
    """Who did something: a user, an outside reviewer (by address), or the system."""

    #: A user of the site's user model (with Django's permission methods).
    user: Any = None
    email: str = ""

    @property
    def label(self) -> str:
        if self.user is not None:
            return str(self.user.get_username())
        return self.email or SYSTEM

    @property
    def user_id(self) -> Any:
        return self.user.pk if self.user is not None else None

    @classmethod
    def of(cls, user: Any) -> Actor:
        """The actor for ``user`` (None or an anonymous user is the system)."""
        if user is None or not getattr(user, "is_authenticated", False):
            return cls()
        return cls(user=user)


def record_system(campaign_id: int, verb: Verb, image_ids: list[int], *, note: str = "") -> None:
    """One row per image for what the pipeline did on its own (no user, no LogEntry)."""
    Activity.objects.bulk_create(
        Activity(
            campaign_id=campaign_id, image_id=image_id, verb=verb, actor_label=SYSTEM, note=note
        )
        for image_id in image_ids
    )


def record_many(
    campaign_id: int, verb: Verb, actor: Actor, image_ids: list[int], *, note: str = ""
) -> None:
    """One row per image for what ``actor`` did to several images at once (a cancel), and
    for a user one ``LogEntry`` on the campaign; ``activity_recorded`` is sent per row."""
    if actor.user is None:
        record_system(campaign_id, verb, image_ids, note=note)
        return
    for image_id in image_ids:
        row = Activity.objects.create(
            campaign_id=campaign_id,
            image_id=image_id,
            verb=verb,
            actor_id=actor.user_id,
            actor_label=actor.label[:254],
            note=note,
        )
        if signals.activity_recorded.has_listeners(Activity):
            transaction.on_commit(_announce(row))
    message = str(Verb(verb).label)
    LogEntry.objects.log_actions(
        user_id=actor.user_id,
        queryset=[Campaign.objects.get(pk=campaign_id)],
        action_flag=CHANGE,
        change_message=f"{message}: {note}" if note else message,
        single_object=True,
    )


def _announce(row: Activity) -> Callable[[], None]:
    def send() -> None:
        signals.activity_recorded.send_robust(Activity, activity=row)

    return send


def record(
    campaign: Campaign | int,
    verb: Verb,
    actor: Actor,
    *,
    image: GeneratedImage | None = None,
    note: str = "",
    log_entry_for: models.Model | None = None,
) -> Activity:
    """Write one activity row (and, for a user, a ``LogEntry`` on ``log_entry_for``, the
    image or else the campaign); ``activity_recorded`` is sent once it commits."""
    campaign_id = campaign.pk if isinstance(campaign, Campaign) else campaign
    row = Activity.objects.create(
        campaign_id=campaign_id,
        image=image,
        verb=verb,
        actor_id=actor.user_id,
        actor_label=actor.label[:254],
        note=note,
    )
    if actor.user is not None:
        target = log_entry_for or image or Campaign.objects.get(pk=campaign_id)
        message = str(Verb(verb).label)
        LogEntry.objects.log_actions(
            user_id=actor.user_id,
            queryset=[target],
            action_flag=CHANGE,
            change_message=f"{message}: {note}" if note else message,
            single_object=True,
        )
    if signals.activity_recorded.has_listeners(Activity):
        transaction.on_commit(lambda: signals.activity_recorded.send_robust(Activity, activity=row))
    return row
