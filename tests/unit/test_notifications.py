"""Who is mailed about each step of the workflow (docs/workflow.md, "E-mail").

Each step is taken through review.py as a user would; the receiver's queued job is recorded
by the ``enqueued`` fixture and run here, directly, against Django's locmem backend
(``mailoutbox``). The summary's claim lives in a strict in-memory stand-in for Redis.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.utils import timezone
from unit_helpers import make_campaign, make_task

from imagen_assets import activity, notifications, queueing, review, sharing
from imagen_assets.activity import Actor, Verb
from imagen_assets.models import Campaign, GeneratedImage, GenerationTask, ShareLink

SITE = "https://marketing.example.com"
REVIEW_PERMS = [
    "approve_generatedimage",
    "reject_generatedimage",
    "revoke_generatedimage",
    "signoff_campaign",
]

pytestmark = pytest.mark.django_db


class StrictRedis:
    """Only the two calls the summary's claim makes; anything else fails the test."""

    def __init__(self) -> None:
        self.keys: dict[str, str] = {}

    def set(self, key: str, value: str, *, nx: bool, ex: int) -> bool | None:
        assert nx and ex > 0, "the claim must be atomic and expire"
        if key in self.keys:
            return None
        self.keys[key] = value
        return True

    def delete(self, key: str) -> int:
        return 1 if self.keys.pop(key, None) is not None else 0


@pytest.fixture
def redis(monkeypatch: pytest.MonkeyPatch) -> StrictRedis:
    fake = StrictRedis()

    class Queue:
        connection = fake

    monkeypatch.setattr(queueing, "get_queue", lambda: Queue())
    return fake


@pytest.fixture(autouse=True)
def site(settings: Any) -> None:
    settings.IMAGEN_ASSETS = {**settings.IMAGEN_ASSETS, "SITE_URL": SITE + "/"}
    settings.DEFAULT_FROM_EMAIL = "images@example.com"


def make_user(name: str, email: str = "", *perms: str, active: bool = True) -> Any:
    user = get_user_model().objects.create_user(name, email=email, is_active=active)
    if perms:
        user.user_permissions.set(
            Permission.objects.filter(content_type__app_label="imagen_assets", codename__in=perms)
        )
    return user


@pytest.fixture
def people() -> dict[str, Any]:
    return {
        "owner": make_user("olga", "olga@example.com", "change_campaign"),
        "requester": make_user(
            "rita", "rita@example.com", "change_campaign", "view_generatedimage"
        ),
        "alice": make_user("alice", "alice@example.com", *REVIEW_PERMS),
        "bob": make_user("bob", "BOB@example.com", *REVIEW_PERMS),
        "mute": make_user("mute", "", *REVIEW_PERMS),  # no address
        "gone": make_user("gone", "gone@example.com", *REVIEW_PERMS, active=False),
    }


@pytest.fixture
def campaign(people: dict[str, Any]) -> Campaign:
    return make_campaign(created_by=people["owner"])


def ready_task(campaign: Campaign, requester: Any, images: int = 2) -> GenerationTask:
    return make_task(
        campaign,
        num_images=images,
        status="succeeded",
        image_status=GeneratedImage.Status.SUCCEEDED,
        requested_by=requester,
    )


def images_of(task: GenerationTask) -> list[GeneratedImage]:
    return list(task.images.order_by("index"))


@pytest.fixture
def step(
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> Callable[..., Any]:
    """Take one step through review.py and let its transaction's on-commit work run."""

    def run(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with django_capture_on_commit_callbacks(execute=True):
            return func(*args, **kwargs)

    return run


def run_jobs(enqueued: list[Any]) -> list[int]:
    """Run the queued notification jobs (and nothing else may have been queued)."""
    results = []
    for call in enqueued:
        assert call.func is notifications.send_for_activity, call
        results.append(call.func(*call.args))
    enqueued.clear()
    return results


def recipients(mailoutbox: list[Any]) -> list[str]:
    return sorted(address for message in mailoutbox for address in message.to)


class SubmitTests:
    def test_mails_each_eligible_reviewer_with_an_address_but_not_the_submitter(
        self, people, campaign, step, enqueued, mailoutbox
    ):
        people["alice"].user_permissions.add(
            Permission.objects.get(codename="change_campaign")
        )  # alice may submit and review: she is not told about her own submit
        ready_task(campaign, people["requester"])

        step(review.submit, campaign.pk, Actor(user=people["alice"]))

        assert [call.args for call in enqueued] == [(campaign.activity.get().pk,)]
        assert run_jobs(enqueued) == [1]
        (message,) = mailoutbox
        assert message.to == ["BOB@example.com"]
        assert message.from_email == "images@example.com"
        assert message.subject == "[Campaign images] Spring waits for your review"
        assert "alice submitted Spring for review; 2 image(s) wait for a decision." in message.body
        link = f"{SITE}/admin/imagen_assets/campaign/{campaign.pk}/change/"
        assert link in message.body
        ((html, mimetype),) = message.alternatives
        assert mimetype == "text/html"
        assert f'<a href="{link}">' in html
        assert "alice submitted Spring for review" in html

    def test_only_members_of_the_reviewer_group_are_told(
        self, people, campaign, step, enqueued, mailoutbox
    ):
        group = Group.objects.create(name="Brand")
        people["bob"].groups.add(group)
        campaign.reviewer_group = group
        campaign.save()
        ready_task(campaign, people["requester"])

        step(review.submit, campaign.pk, Actor(user=people["requester"]))
        run_jobs(enqueued)

        assert recipients(mailoutbox) == ["BOB@example.com"]

    def test_superusers_review_too_but_not_outside_the_reviewer_group(
        self, people, campaign, step, enqueued, mailoutbox
    ):
        get_user_model().objects.create_superuser("root", "root@example.com")
        ready_task(campaign, people["requester"])
        step(review.submit, campaign.pk, Actor(user=people["requester"]))
        run_jobs(enqueued)
        assert recipients(mailoutbox) == [
            "BOB@example.com",
            "alice@example.com",
            "root@example.com",
        ]

        mailoutbox.clear()
        step(review.request_changes, campaign.pk, Actor(user=people["alice"]), note="Warmer.")
        campaign.refresh_from_db()
        campaign.reviewer_group = Group.objects.create(name="Brand")
        campaign.save()
        people["bob"].groups.add(campaign.reviewer_group)
        enqueued.clear()
        step(review.submit, campaign.pk, Actor(user=people["requester"]))
        run_jobs(enqueued)
        assert recipients(mailoutbox) == ["BOB@example.com"]


class RequestSummaryTests:
    def test_one_summary_when_the_last_image_of_the_request_is_decided(
        self, people, campaign, step, enqueued, mailoutbox, redis
    ):
        first, second = images_of(ready_task(campaign, people["requester"]))

        step(review.decide, first.pk, "approve", Actor(user=people["alice"]))
        assert run_jobs(enqueued) == [0]  # the second image still waits
        step(review.decide, second.pk, "reject", Actor(user=people["bob"]), note="Too dark.")
        assert run_jobs(enqueued) == [1]

        (message,) = mailoutbox
        assert message.to == ["rita@example.com"]
        assert message.subject == "[Campaign images] Your images in Spring are reviewed"
        assert "1 approved, 1 rejected" in message.body
        assert f"- Image #{first.pk}: Approved" in message.body
        assert f"- Image #{second.pk}: Rejected (Too dark.)" in message.body
        assert "a red bicycle" in message.body  # the request's prompt

    def test_the_summary_goes_out_once_whichever_job_sees_the_request_complete_first(
        self, people, campaign, step, enqueued, mailoutbox, redis
    ):
        first, second = images_of(ready_task(campaign, people["requester"]))
        step(review.decide, first.pk, "approve", Actor(user=people["alice"]))
        step(review.decide, second.pk, "approve", Actor(user=people["alice"]))
        jobs = [call.args[0] for call in enqueued]

        # Both jobs run late, after both decisions committed: each sees the request
        # complete; then each runs again (as a retried job would).
        sent = [notifications.send_for_activity(job) for job in jobs + jobs]

        assert sent == [1, 0, 0, 0]
        assert len(mailoutbox) == 1

    def test_an_approval_short_of_the_required_count_decides_nothing(
        self, people, campaign, step, enqueued, mailoutbox, redis
    ):
        campaign.required_approvals = 2
        campaign.save()
        (image,) = images_of(ready_task(campaign, people["requester"], images=1))

        step(review.decide, image.pk, "approve", Actor(user=people["alice"]))
        assert run_jobs(enqueued) == [0]
        step(review.decide, image.pk, "approve", Actor(user=people["bob"]))
        assert run_jobs(enqueued) == [1]
        assert recipients(mailoutbox) == ["rita@example.com"]

    def test_images_still_generating_keep_the_request_open_and_failed_ones_do_not(
        self, people, campaign, step, enqueued, mailoutbox, redis
    ):
        first, second, third = images_of(ready_task(campaign, people["requester"], images=3))
        GeneratedImage.objects.filter(pk=third.pk).update(status="processing", review_status="none")
        step(review.decide, first.pk, "approve", Actor(user=people["alice"]))
        step(review.decide, second.pk, "approve", Actor(user=people["alice"]))
        assert run_jobs(enqueued) == [0, 0]

        GeneratedImage.objects.filter(pk=third.pk).update(status="failed")
        review.revoke(second.pk, Actor(user=people["bob"]), note="Logo cut off.")
        step(review.decide, second.pk, "approve", Actor(user=people["bob"]))
        assert run_jobs(enqueued) == [1]
        assert f"Image #{third.pk}" not in mailoutbox[0].body

    def test_a_revoke_tells_requester_and_owner_and_the_redecided_request_is_summed_up_again(
        self, people, campaign, step, enqueued, mailoutbox, redis
    ):
        (image,) = images_of(ready_task(campaign, people["requester"], images=1))
        step(review.decide, image.pk, "approve", Actor(user=people["alice"]))
        assert run_jobs(enqueued) == [1]
        mailoutbox.clear()

        step(review.revoke, image.pk, Actor(user=people["bob"]), note="Wrong logo.")
        assert run_jobs(enqueued) == [2]
        assert recipients(mailoutbox) == ["olga@example.com", "rita@example.com"]
        assert mailoutbox[0].subject == (
            f"[Campaign images] The review of image #{image.pk} in Spring was revoked"
        )
        assert "Wrong logo." in mailoutbox[0].body
        assert f"{SITE}/admin/imagen_assets/generatedimage/{image.pk}/change/" in (
            mailoutbox[0].body
        )
        mailoutbox.clear()

        step(review.decide, image.pk, "reject", Actor(user=people["alice"]), note="Still wrong.")
        assert run_jobs(enqueued) == [1]
        assert "0 approved, 1 rejected" in mailoutbox[0].body

    def test_an_unsent_summary_is_released_for_the_next_attempt(
        self, people, campaign, step, enqueued, mailoutbox, redis, monkeypatch
    ):
        (image,) = images_of(ready_task(campaign, people["requester"], images=1))
        step(review.decide, image.pk, "approve", Actor(user=people["alice"]))
        (job,) = enqueued
        send = notifications._send

        def refuse(*args: Any, **kwargs: Any) -> int:
            raise ConnectionRefusedError("no mail server")

        monkeypatch.setattr(notifications, "_send", refuse)
        with pytest.raises(ConnectionRefusedError):
            notifications.send_for_activity(*job.args)
        assert redis.keys == {}

        monkeypatch.setattr(notifications, "_send", send)
        assert notifications.send_for_activity(*job.args) == 1
        assert len(redis.keys) == 1


class SignOffTests:
    @pytest.fixture
    def in_review(self, people, campaign, step, enqueued, redis) -> Campaign:
        (image,) = images_of(ready_task(campaign, people["requester"], images=1))
        step(review.decide, image.pk, "approve", Actor(user=people["alice"]))
        step(review.submit, campaign.pk, Actor(user=people["requester"]))
        enqueued.clear()
        return campaign

    def test_sign_off_tells_the_submitter_and_the_owner(
        self, people, in_review, step, enqueued, mailoutbox
    ):
        step(review.sign_off, in_review.pk, Actor(user=people["alice"]), note="Ship it.")
        assert run_jobs(enqueued) == [2]
        assert recipients(mailoutbox) == ["olga@example.com", "rita@example.com"]
        assert mailoutbox[0].subject == "[Campaign images] Spring is signed off"
        assert "alice signed off Spring; its 1 approved image(s) may be used." in (
            mailoutbox[0].body
        )
        assert "Ship it." in mailoutbox[0].body

    def test_changes_requested_tells_them_too_and_an_owner_who_submitted_once(
        self, people, in_review, step, enqueued, mailoutbox
    ):
        Campaign.objects.filter(pk=in_review.pk).update(created_by=people["requester"])
        step(review.request_changes, in_review.pk, Actor(user=people["bob"]), note="Warmer.")
        assert run_jobs(enqueued) == [1]
        (message,) = mailoutbox
        assert message.to == ["rita@example.com"]
        assert message.subject == "[Campaign images] Changes requested in Spring"
        assert "What should change:\nWarmer." in message.body


class CommentTests:
    def test_the_requester_and_earlier_commenters_never_the_author(
        self, people, campaign, step, enqueued, mailoutbox
    ):
        (image,) = images_of(ready_task(campaign, people["requester"], images=1))
        step(review.comment, image.pk, Actor(user=people["alice"]), "Crop tighter?")
        assert run_jobs(enqueued) == [1]
        assert recipients(mailoutbox) == ["rita@example.com"]
        mailoutbox.clear()

        step(review.comment, image.pk, Actor(user=people["requester"]), "Will do.")
        assert run_jobs(enqueued) == [1]
        assert recipients(mailoutbox) == ["alice@example.com"]  # not rita, who wrote it
        mailoutbox.clear()

        step(review.comment, image.pk, Actor(user=people["bob"]), "Agreed.")
        assert run_jobs(enqueued) == [2]
        assert recipients(mailoutbox) == ["alice@example.com", "rita@example.com"]
        subject = f"[Campaign images] New comment on image #{image.pk} in Spring"
        assert mailoutbox[0].subject == subject
        assert "Comment:\nAgreed." in mailoutbox[0].body

    def test_an_outside_reviewers_comment_tells_the_requester(
        self, people, campaign, step, enqueued, mailoutbox
    ):
        (image,) = images_of(ready_task(campaign, people["requester"], images=1))
        ShareLink.objects.create(
            campaign=campaign,
            email="guest@agency.example",
            expires_at=timezone.now() + timedelta(days=1),
        )
        step(review.comment, image.pk, Actor(email="guest@agency.example"), "Lovely.")
        run_jobs(enqueued)
        assert recipients(mailoutbox) == ["rita@example.com"]
        assert "guest@agency.example commented" in mailoutbox[0].body


class InvitationTests:
    def test_the_outside_reviewer_gets_their_link_and_nobody_else_is_mailed(
        self, people, campaign, step, enqueued, mailoutbox
    ):
        people["owner"].user_permissions.add(Permission.objects.get(codename="share_campaign"))
        owner = Actor(user=get_user_model().objects.get(pk=people["owner"].pk))
        shared = step(sharing.share, campaign.pk, owner, "Guest@Agency.example", days=3)

        assert run_jobs(enqueued) == [1]
        (message,) = mailoutbox
        assert message.to == ["guest@agency.example"]
        assert message.subject == "[Campaign images] Please review the images of Spring"
        assert sharing.link_url(shared.link) in message.body
        assert sharing.link_url(shared.link).startswith(SITE + "/imagen/review/")
        assert sharing.link_url(shared.link) in message.alternatives[0][0]

    def test_a_revoked_link_is_not_sent(self, people, campaign, step, enqueued, mailoutbox):
        for codename in ("share_campaign",):
            people["owner"].user_permissions.add(Permission.objects.get(codename=codename))
        owner = Actor(user=get_user_model().objects.get(pk=people["owner"].pk))
        shared = step(sharing.share, campaign.pk, owner, "guest@agency.example")
        step(sharing.revoke_link, shared.link.pk, owner)

        run_jobs(enqueued)
        assert mailoutbox == []


class ExportTests:
    def test_whoever_asked_for_the_export_is_told(
        self, people, campaign, step, enqueued, mailoutbox
    ):
        step(
            lambda: activity.record(
                campaign,
                Verb.EXPORTED,
                Actor(user=people["requester"]),
                note="3 approved image(s) in spring.zip",
            )
        )
        assert run_jobs(enqueued) == [1]
        (message,) = mailoutbox
        assert message.to == ["rita@example.com"]
        assert message.subject == "[Campaign images] Your export of Spring is ready"
        assert "3 approved image(s) in spring.zip" in message.body


class SettingsTests:
    def test_without_site_url_the_mail_says_open_the_admin_without_a_link(
        self, settings, people, campaign, step, enqueued, mailoutbox
    ):
        settings.IMAGEN_ASSETS = {**settings.IMAGEN_ASSETS, "SITE_URL": None}
        (image,) = images_of(ready_task(campaign, people["requester"], images=1))
        step(review.comment, image.pk, Actor(user=people["alice"]), "Hm.")
        run_jobs(enqueued)

        (message,) = mailoutbox
        assert "Open the admin to see it." in message.body
        assert "http" not in message.body
        assert "href" not in message.alternatives[0][0]

    def test_notifications_off_queue_nothing_and_a_queued_job_sends_nothing(
        self, settings, people, campaign, step, enqueued, mailoutbox
    ):
        (image,) = images_of(ready_task(campaign, people["requester"], images=1))
        step(review.comment, image.pk, Actor(user=people["alice"]), "Queued while on.")
        settings.IMAGEN_ASSETS = {**settings.IMAGEN_ASSETS, "NOTIFICATIONS": False}
        step(review.comment, image.pk, Actor(user=people["bob"]), "Not queued.")

        assert len(enqueued) == 1
        assert run_jobs(enqueued) == [0]
        assert mailoutbox == []

    def test_steps_that_notify_nobody_queue_nothing(self, people, campaign, step, enqueued):
        people["owner"].user_permissions.add(
            Permission.objects.get(codename="change_review_policy")
        )
        owner = Actor(user=get_user_model().objects.get(pk=people["owner"].pk))  # perms fresh
        step(review.set_policy, campaign.pk, owner, required_approvals=2)
        step(review.archive, campaign.pk, owner)
        step(review.reopen, campaign.pk, owner)

        assert campaign.activity.count() == 3
        assert enqueued == []

    def test_a_step_rolled_back_queues_nothing(
        self, people, campaign, django_capture_on_commit_callbacks, enqueued
    ):
        (image,) = images_of(ready_task(campaign, people["requester"], images=1))
        with (
            django_capture_on_commit_callbacks(execute=True),
            pytest.raises(RuntimeError),
            transaction.atomic(),
        ):
            review.comment(image.pk, Actor(user=people["alice"]), "Never happened.")
            raise RuntimeError("rolled back")
        assert enqueued == []

    def test_a_deleted_activity_row_sends_nothing(self, mailoutbox):
        assert notifications.send_for_activity(987654) == 0
        assert mailoutbox == []
