"""The approval workflow's rules (imagen_assets.review), one test per rule of
docs/workflow.md "The rules, precisely". Refusals must change nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django.utils import timezone
from unit_helpers import make_campaign, make_task

from imagen_assets import review, services, signals
from imagen_assets.activity import Actor
from imagen_assets.models import (
    Activity,
    Campaign,
    Export,
    GeneratedImage,
    ReviewDecision,
    ShareLink,
)
from imagen_assets.review import ReviewError
from imagen_assets.status import CampaignStatus, Decision

pytestmark = pytest.mark.django_db

REVIEW_PERMS = ["approve_generatedimage", "reject_generatedimage"]


def make_user(name: str, *codenames: str, groups: tuple[Group, ...] = ()) -> Any:
    user = get_user_model().objects.create_user(name, email=f"{name}@example.com")
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="imagen_assets", codename__in=codenames)
    )
    user.groups.set(groups)
    return user


@pytest.fixture
def owner() -> Any:
    return make_user("owner", "change_campaign", "generate_images")


@pytest.fixture
def ann() -> Any:
    return make_user("ann", *REVIEW_PERMS, "revoke_generatedimage", "signoff_campaign")


@pytest.fixture
def bob() -> Any:
    return make_user("bob", *REVIEW_PERMS, "signoff_campaign")


@pytest.fixture
def campaign(owner: Any) -> Campaign:
    return make_campaign(created_by=owner)


def ready_image(campaign: Campaign, requester: Any = None) -> GeneratedImage:
    task = make_task(campaign, status="succeeded", image_status="succeeded", requested_by=requester)
    return task.images.get()


def decide(image: GeneratedImage, user: Any, decision: str = "approve", note: str = "") -> Any:
    return review.decide(image.pk, decision, Actor.of(user), note=note)


def state(image: GeneratedImage) -> tuple[str, int, int]:
    image.refresh_from_db()
    return image.review_status, image.review_round, image.decisions.count()


class RoundTests:
    def test_one_approval_approves_by_default_and_is_on_record(self, campaign, owner, ann):
        image = ready_image(campaign, owner)

        decide(image, ann, note=" on brand ")

        assert state(image) == ("approved", 1, 1)
        row = image.decisions.get()
        assert (row.decision, row.reviewer, row.reviewer_label, row.note, row.round) == (
            "approve",
            ann,
            "ann",
            "on brand",
            1,
        )
        assert (image.reviewed_by, image.review_note) == (ann, "on brand")
        assert Activity.objects.filter(image=image, verb="approved", actor=ann).count() == 1
        assert LogEntry.objects.filter(user=ann, object_id=str(image.pk)).count() == 1

    def test_two_required_approvals_need_two_different_reviewers(self, campaign, owner, ann, bob):
        campaign.required_approvals = 2
        campaign.save()
        image = ready_image(campaign, owner)

        decide(image, ann)
        assert state(image) == ("pending", 1, 1)
        with pytest.raises(ReviewError, match="already decided on image"):
            decide(image, ann)
        assert state(image) == ("pending", 1, 1)
        decide(image, bob)

        assert state(image) == ("approved", 1, 2)
        assert image.reviewed_by == bob  # the decision that decided the round

    def test_a_reject_decides_the_round_and_its_reason_is_a_comment(
        self, campaign, owner, ann, bob
    ):
        campaign.required_approvals = 2
        campaign.save()
        image = ready_image(campaign, owner)
        decide(image, ann)

        decide(image, bob, "reject", note="logo distorted")

        assert state(image) == ("rejected", 1, 2)
        assert list(image.comments.values_list("author_label", "text")) == [
            ("bob", "logo distorted")
        ]

    @pytest.mark.parametrize("note", ["", "   "])
    def test_a_reject_needs_a_reason(self, campaign, owner, ann, note):
        image = ready_image(campaign, owner)
        with pytest.raises(ReviewError, match="Say why"):
            decide(image, ann, "reject", note=note)
        assert state(image) == ("pending", 1, 0)

    def test_a_decided_image_refuses_further_decisions(self, campaign, owner, ann, bob):
        image = ready_image(campaign, owner)
        decide(image, ann)

        with pytest.raises(ReviewError, match="already approved; reload"):
            decide(image, bob, "reject", note="too late")

        assert state(image) == ("approved", 1, 1)

    @pytest.mark.parametrize("status", ["queued", "processing", "failed", "filtered", "cancelled"])
    def test_only_ready_images_are_reviewable(self, campaign, owner, ann, status):
        image = make_task(campaign, image_status=status, requested_by=owner).images.get()

        with pytest.raises(ReviewError, match="not ready"):
            decide(image, ann)

        assert state(image) == ("none", 1, 0)
        assert not campaign.images.pending_review().exists()


class EligibilityTests:
    def test_without_the_permission_nobody_decides(self, campaign, owner):
        image = ready_image(campaign, owner)
        stranger = make_user("stranger")
        with pytest.raises(ReviewError, match="may not review"):
            decide(image, stranger)
        assert state(image) == ("pending", 1, 0)

    def test_the_reviewer_group_limits_who_decides_even_superusers(self, campaign, owner, ann):
        group = Group.objects.create(name="Brand team")
        campaign.reviewer_group = group
        campaign.save()
        image = ready_image(campaign, owner)
        root = get_user_model().objects.create_superuser("root", "r@example.com", None)

        for outsider in (ann, root):
            with pytest.raises(ReviewError, match="may not review"):
                decide(image, outsider)
        ann.groups.add(group)
        decide(image, ann)

        assert state(image) == ("approved", 1, 1)

    def test_four_eyes_the_requester_cannot_decide(self, campaign, ann):
        image = ready_image(campaign, requester=ann)

        with pytest.raises(ReviewError, match="requested by you"):
            decide(image, ann)
        assert state(image) == ("pending", 1, 0)

        campaign.allow_self_approval = True
        campaign.save()
        decide(image, ann)
        assert state(image) == ("approved", 1, 1)

    def test_nothing_is_decided_in_an_archived_campaign(self, campaign, owner, ann):
        image = ready_image(campaign, owner)
        Campaign.objects.filter(pk=campaign.pk).update(status="archived")

        with pytest.raises(ReviewError, match="archived"):
            decide(image, ann)
        assert state(image) == ("pending", 1, 0)

    def test_an_outside_reviewer_is_recorded_under_their_address(self, campaign, owner):
        image = ready_image(campaign, owner)
        ShareLink.objects.create(
            campaign=campaign,
            email="agency@example.net",
            expires_at=timezone.now() + timedelta(days=1),
        )

        review.decide(image.pk, Decision.APPROVE, Actor(email="agency@example.net"))

        row = image.decisions.get()
        assert (row.reviewer, row.reviewer_email, row.reviewer_label) == (
            None,
            "agency@example.net",
            "agency@example.net",
        )


class RevokeTests:
    def test_a_revoke_starts_a_new_round_where_old_decisions_do_not_count(
        self, campaign, owner, ann, bob
    ):
        image = ready_image(campaign, owner)
        decide(image, ann)
        export = Export.objects.create(campaign=campaign, status="ready", image_ids=[image.pk])

        review.revoke(image.pk, Actor.of(ann), note="wrong product shot")

        assert state(image) == ("pending", 2, 2)
        assert image.reviewed_by is None
        export.refresh_from_db()
        assert export.stale
        decide(image, ann)  # the same reviewer may decide again in the new round
        assert state(image) == ("approved", 2, 3)
        assert list(image.decisions.values_list("decision", "round")) == [
            ("approve", 1),
            ("revoke", 1),
            ("approve", 2),
        ]

    def test_a_revoke_needs_the_permission_a_reason_and_a_decided_image(
        self, campaign, owner, ann, bob
    ):
        image = ready_image(campaign, owner)
        with pytest.raises(ReviewError, match="nothing to revoke"):
            review.revoke(image.pk, Actor.of(ann), note="x")
        decide(image, ann)
        with pytest.raises(ReviewError, match="may not revoke"):
            review.revoke(image.pk, Actor.of(bob), note="x")
        with pytest.raises(ReviewError, match="Say why"):
            review.revoke(image.pk, Actor.of(ann), note=" ")
        assert state(image) == ("approved", 1, 1)

    def test_a_revoke_sends_an_approved_campaign_back_to_review(self, campaign, owner, ann):
        image = ready_image(campaign, owner)
        decide(image, ann)
        Campaign.objects.filter(pk=campaign.pk).update(status="approved", submitted_by=owner)

        review.revoke(image.pk, Actor.of(ann), note="recalled")

        campaign.refresh_from_db()
        assert (campaign.status, campaign.submitted_by) == ("in_review", owner)
        # Logged as what it is, not as a submit by the reviewer who revoked.
        assert list(campaign.activity.order_by("pk").values_list("verb", "actor_label"))[-2:] == [
            ("revoked", "ann"),
            ("back_in_review", "ann"),
        ]


class FrozenApprovalTests:
    @pytest.fixture
    def approved(self, campaign, owner, ann) -> GeneratedImage:
        image = ready_image(campaign, owner)
        decide(image, ann)
        return image

    def test_an_approved_image_cannot_be_deleted_by_any_path(self, campaign, approved):
        for delete in (
            approved.delete,
            GeneratedImage.objects.filter(pk=approved.pk).delete,
            approved.task.delete,
            campaign.delete,
        ):
            with pytest.raises(ProtectedError), transaction.atomic():
                delete()
        assert GeneratedImage.objects.filter(pk=approved.pk).exists()
        assert Campaign.objects.filter(pk=campaign.pk).exists()

    def test_after_a_revoke_it_can_be_deleted(self, campaign, approved, ann):
        review.revoke(approved.pk, Actor.of(ann), note="not needed")

        campaign.delete()

        assert not GeneratedImage.objects.filter(pk=approved.pk).exists()

    def test_unapproved_images_go_with_their_campaign(self, campaign, owner):
        image = ready_image(campaign, owner)
        campaign.delete()
        assert not GeneratedImage.objects.filter(pk=image.pk).exists()


class CampaignSignOffTests:
    def test_submit_then_sign_off_by_someone_else(self, campaign, owner, ann):
        image = ready_image(campaign, owner)

        review.submit(campaign.pk, Actor.of(owner))
        campaign.refresh_from_db()
        assert (campaign.status, campaign.submitted_by) == ("in_review", owner)
        with pytest.raises(ReviewError, match="still wait for review"):
            review.sign_off(campaign.pk, Actor.of(ann))
        decide(image, ann)
        review.sign_off(campaign.pk, Actor.of(ann))

        campaign.refresh_from_db()
        assert campaign.status == "approved"
        verbs = list(campaign.activity.order_by("pk").values_list("verb", flat=True))
        assert verbs[-3:] == ["submitted", "approved", "signed_off"]

    def test_four_eyes_the_submitter_cannot_sign_off(self, campaign, ann, bob):
        image = ready_image(campaign, bob)
        ann.user_permissions.add(Permission.objects.get(codename="change_campaign"))
        review.submit(campaign.pk, Actor.of(ann))
        decide(image, ann)

        with pytest.raises(ReviewError, match="someone else must sign it off"):
            review.sign_off(campaign.pk, Actor.of(ann))
        campaign.refresh_from_db()
        assert campaign.status == "in_review"

    def test_failed_and_withheld_images_never_block_a_sign_off(self, campaign, owner, ann):
        image = ready_image(campaign, owner)
        make_task(campaign, image_status="failed", requested_by=owner)
        make_task(campaign, image_status="filtered", requested_by=owner)
        review.submit(campaign.pk, Actor.of(owner))
        decide(image, ann)

        review.sign_off(campaign.pk, Actor.of(ann))

        campaign.refresh_from_db()
        assert campaign.status == "approved"

    def test_submit_is_refused_without_enough_reviewers_other_than_the_submitter(
        self, campaign, owner, ann
    ):
        ready_image(campaign, owner)
        campaign.required_approvals = 2
        campaign.save()

        with pytest.raises(ReviewError, match="needs 2 approvals per image but only 1"):
            review.submit(campaign.pk, Actor.of(owner))
        campaign.refresh_from_db()
        assert campaign.status == "draft"

    def test_four_eyes_count_the_requester_out_not_the_submitter(self, campaign, owner, ann, bob):
        ann.user_permissions.add(Permission.objects.get(codename="change_campaign"))
        ann = get_user_model().objects.get(pk=ann.pk)
        campaign.required_approvals = 2
        campaign.save()
        image = ready_image(campaign, requester=bob)  # bob may review, but not his own

        with pytest.raises(ReviewError, match="only 1 eligible reviewer"):
            review.submit(campaign.pk, Actor.of(owner))

        decide(image, ann)
        make_user("carl", *REVIEW_PERMS)
        review.submit(campaign.pk, Actor.of(ann))  # ann may submit: carl and ann review it
        campaign.refresh_from_db()
        assert campaign.status == "in_review"

    def test_decided_images_need_no_reviewers_to_submit(self, campaign, owner, ann, bob):
        campaign.required_approvals = 2
        campaign.save()
        image = ready_image(campaign, owner)
        decide(image, ann)
        decide(image, bob)
        ann.user_permissions.add(Permission.objects.get(codename="change_campaign"))
        ann = get_user_model().objects.get(pk=ann.pk)

        review.submit(campaign.pk, Actor.of(ann))  # nothing left for anyone to decide

        campaign.refresh_from_db()
        assert campaign.status == "in_review"

    def test_submit_needs_a_ready_image(self, campaign, owner, ann):
        with pytest.raises(ReviewError, match="no ready image"):
            review.submit(campaign.pk, Actor.of(owner))

    def test_request_changes_needs_a_note_and_returns_to_the_team(self, campaign, owner, ann):
        ready_image(campaign, owner)
        review.submit(campaign.pk, Actor.of(owner))
        with pytest.raises(ReviewError, match="Say what should change"):
            review.request_changes(campaign.pk, Actor.of(ann), note="")

        review.request_changes(campaign.pk, Actor.of(ann), note="warmer light")

        campaign.refresh_from_db()
        assert campaign.status == "changes_requested"
        review.submit(campaign.pk, Actor.of(owner))  # and back
        campaign.refresh_from_db()
        assert campaign.status == "in_review"

    def test_archive_and_reopen(self, campaign, owner, ann):
        review.archive(campaign.pk, Actor.of(owner))
        campaign.refresh_from_db()
        assert campaign.status == "archived"
        with pytest.raises(ReviewError, match="already archived"):
            review.archive(campaign.pk, Actor.of(owner))

        review.reopen(campaign.pk, Actor.of(owner))
        campaign.refresh_from_db()
        assert campaign.status == "draft"
        with pytest.raises(ReviewError, match="only an approved or archived"):
            review.reopen(campaign.pk, Actor.of(owner))

    @pytest.mark.parametrize("status", [CampaignStatus.APPROVED, CampaignStatus.ARCHIVED])
    def test_no_generating_in_a_signed_off_or_archived_campaign(self, campaign, owner, status):
        Campaign.objects.filter(pk=campaign.pk).update(status=status)
        campaign.refresh_from_db()

        with pytest.raises(services.GenerationRequestError, match="reopen it"):
            services.request_images(campaign=campaign, prompt="more", count=1, user=owner)
        assert not campaign.tasks.exists()


class WholeSaveTests:
    def test_saving_a_stale_campaign_whole_does_not_undo_its_sign_off(self, campaign, owner, ann):
        stale = Campaign.objects.get(pk=campaign.pk)  # e.g. an admin form opened earlier
        image = ready_image(campaign, owner)
        review.submit(campaign.pk, Actor.of(owner))
        decide(image, ann)
        review.sign_off(campaign.pk, Actor.of(ann))

        stale.brief = "edited meanwhile"
        stale.save()

        campaign.refresh_from_db()
        assert (campaign.status, campaign.submitted_by, campaign.brief) == (
            "approved",
            owner,
            "edited meanwhile",
        )


class PolicyTests:
    def test_only_with_the_permission_and_not_in_review(self, campaign, owner, ann):
        group = Group.objects.create(name="Reviewers")
        with pytest.raises(ReviewError, match="may not change review policies"):
            review.set_policy(campaign.pk, Actor.of(owner), required_approvals=2)
        owner.user_permissions.add(Permission.objects.get(codename="change_review_policy"))
        owner = get_user_model().objects.get(pk=owner.pk)  # fresh permission cache

        review.set_policy(
            campaign.pk,
            Actor.of(owner),
            required_approvals=2,
            reviewer_group=group,
            allow_self_approval=True,
        )

        campaign.refresh_from_db()
        assert (
            campaign.required_approvals,
            campaign.reviewer_group,
            campaign.allow_self_approval,
        ) == (
            2,
            group,
            True,
        )
        Campaign.objects.filter(pk=campaign.pk).update(status="in_review")
        with pytest.raises(ReviewError, match="in review"):
            review.set_policy(campaign.pk, Actor.of(owner), required_approvals=1)

    def test_the_reviewer_group_is_protected(self, campaign):
        group = Group.objects.create(name="Reviewers")
        campaign.reviewer_group = group
        campaign.save()
        with pytest.raises(ProtectedError):
            group.delete()


class SignalTests:
    def test_approved_and_revoked_are_sent_after_commit(
        self, campaign, owner, ann, django_capture_on_commit_callbacks
    ):
        seen: list[tuple[str, int]] = []

        def on_approved(sender: Any, image: GeneratedImage, **kwargs: Any) -> None:
            seen.append(("approved", image.pk))

        def on_revoked(sender: Any, image: GeneratedImage, **kwargs: Any) -> None:
            seen.append(("revoked", image.pk))

        signals.image_approved.connect(on_approved)
        signals.image_revoked.connect(on_revoked)
        try:
            image = ready_image(campaign, owner)
            with django_capture_on_commit_callbacks(execute=True):
                decide(image, ann)
                assert seen == []
            with django_capture_on_commit_callbacks(execute=True):
                review.revoke(image.pk, Actor.of(ann), note="x")
        finally:
            signals.image_approved.disconnect(on_approved)
            signals.image_revoked.disconnect(on_revoked)

        assert seen == [("approved", image.pk), ("revoked", image.pk)]


class OnePerRoundConstraintTests:
    def test_the_database_refuses_a_second_decision_by_the_same_reviewer(
        self, campaign, owner, ann
    ):
        image = ready_image(campaign, owner)
        ReviewDecision.objects.create(
            image=image, round=1, decision="approve", reviewer=ann, reviewer_label="ann"
        )
        with pytest.raises(IntegrityError), transaction.atomic():
            ReviewDecision.objects.create(
                image=image, round=1, decision="reject", reviewer=ann, reviewer_label="a2"
            )
        ReviewDecision.objects.create(
            image=image,
            round=1,
            decision="approve",
            reviewer_email="x@example.net",
            reviewer_label="x@example.net",
        )
        with pytest.raises(IntegrityError), transaction.atomic():
            ReviewDecision.objects.create(
                image=image,
                round=1,
                decision="reject",
                reviewer_email="x@example.net",
                reviewer_label="someone",
            )


class ReviewerIdentityTests:
    def test_a_renamed_reviewer_is_still_one_reviewer(self, campaign, owner, ann):
        campaign.required_approvals = 2
        campaign.save()
        image = ready_image(campaign, owner)
        decide(image, ann)
        ann.username = "ann.smith"
        ann.save()

        with pytest.raises(ReviewError, match="already decided"):
            decide(image, ann)
        assert state(image) == ("pending", 1, 1)

    def test_an_address_without_an_active_link_is_not_a_reviewer(self, campaign, owner):
        image = ready_image(campaign, owner)
        stranger = Actor(email="stranger@elsewhere.test")
        with pytest.raises(ReviewError, match="may not review"):
            review.decide(image.pk, Decision.APPROVE, stranger)
        ShareLink.objects.create(
            campaign=campaign,
            email="stranger@elsewhere.test",
            expires_at=timezone.now() - timedelta(minutes=1),
        )
        with pytest.raises(ReviewError, match="may not review"):
            review.decide(image.pk, Decision.APPROVE, stranger)
        assert state(image) == ("pending", 1, 0)


class SignedOffSetTests:
    def test_a_signed_off_campaign_takes_no_more_decisions(self, campaign, owner, ann, bob):
        image = ready_image(campaign, owner)
        campaign.required_approvals = 2
        campaign.save()
        decide(image, ann)
        Campaign.objects.filter(pk=campaign.pk).update(status="approved")

        with pytest.raises(ReviewError, match="signed off"):
            decide(image, bob)
        assert state(image) == ("pending", 1, 1)

    def test_no_sign_off_while_images_are_being_generated(self, campaign, owner, ann):
        image = ready_image(campaign, owner)
        make_task(campaign, image_status="processing", requested_by=owner)
        review.submit(campaign.pk, Actor.of(owner))
        decide(image, ann)

        with pytest.raises(ReviewError, match="being generated"):
            review.sign_off(campaign.pk, Actor.of(ann))
        campaign.refresh_from_db()
        assert campaign.status == "in_review"

    def test_a_policy_change_does_not_rewrite_history(self, campaign, owner, ann, bob):
        campaign.required_approvals = 3
        campaign.save()
        image = ready_image(campaign, owner)
        decide(image, ann)
        decide(image, bob)
        owner.user_permissions.add(Permission.objects.get(codename="change_review_policy"))
        owner = get_user_model().objects.get(pk=owner.pk)

        review.set_policy(campaign.pk, Actor.of(owner), required_approvals=2)

        # Still pending: nobody decided under the new policy, and the policy's owner may
        # not approve by changing it. The next eligible approval decides it.
        assert state(image) == ("pending", 1, 2)
        carl = make_user("carl", *REVIEW_PERMS)
        decide(image, carl)
        assert state(image) == ("approved", 1, 3)
