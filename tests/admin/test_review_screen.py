"""The review screen and the admin index's count: what waits for *my* decision
(review.waiting_for, one rule for both), decisions through review.*, back to the same place."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import Group
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from imagen_assets import files, review
from imagen_assets.activity import Actor
from imagen_assets.admin.review_screen import PER_PAGE
from imagen_assets.models import Campaign, Comment, GeneratedImage, ReviewDecision, ShareLink
from imagen_assets.status import CampaignStatus

pytestmark = pytest.mark.django_db

SCREEN = "/admin/imagen_assets/generatedimage/review/"
REVIEWER_PERMS = ("approve_generatedimage", "reject_generatedimage", "view_generatedimage")


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def shown_ids(response: Any) -> list[int]:
    return [image.pk for group in response.context["groups"] for image in group.images]


@pytest.fixture
def reviewer(staff_user: Any) -> Any:
    return staff_user(*REVIEWER_PERMS, username="rita")


@pytest.fixture
def other_reviewer(staff_user: Any) -> Any:
    return staff_user(*REVIEWER_PERMS, username="otto")


@pytest.fixture
def request_of(make_task: Any, make_image: Any) -> Any:
    """A request (task) of ``n`` ready images, oldest request first on the screen."""

    def make(campaign: Campaign, n: int = 1, **task_fields: Any) -> list[GeneratedImage]:
        task = make_task(campaign, num_images=n, **task_fields)
        return [make_image(campaign, task=task, index=index) for index in range(n)]

    return make


class WaitingForTests:
    """review.waiting_for: the rule, each clause able to fail on its own."""

    def waiting(self, user: Any, **kwargs: Any) -> list[int]:
        return sorted(review.waiting_for(Actor.of(user), **kwargs).values_list("pk", flat=True))

    def test_ready_pending_images_of_open_campaigns(
        self, reviewer, campaign, make_image, request_of
    ) -> None:
        ready = request_of(campaign)[0]
        make_image(campaign, status="queued")
        make_image(campaign, status="failed")
        make_image(campaign, status="filtered")
        archived = Campaign.objects.create(name="Old", slug="old", status=CampaignStatus.ARCHIVED)
        request_of(archived)
        assert self.waiting(reviewer) == [ready.pk]
        assert self.waiting(reviewer, campaign=archived) == []

    def test_a_failed_row_wrongly_marked_pending_still_does_not_wait(
        self, reviewer, campaign, make_image
    ) -> None:
        failed = make_image(campaign, status="failed")
        GeneratedImage.objects.filter(pk=failed.pk).update(review_status="pending")
        assert self.waiting(reviewer) == []

    def test_needs_the_approve_permission(self, staff_user, campaign, request_of) -> None:
        request_of(campaign)
        looker = staff_user("view_generatedimage", "reject_generatedimage", username="lou")
        assert self.waiting(looker) == []

    def test_reviewer_group_applies_to_superusers_too(
        self, reviewer, admin_user, campaign, request_of
    ) -> None:
        image = request_of(campaign)[0]
        brand = Group.objects.create(name="Brand")
        Campaign.objects.filter(pk=campaign.pk).update(reviewer_group=brand)
        assert self.waiting(reviewer) == []
        assert self.waiting(admin_user) == []
        reviewer.groups.add(brand)
        assert self.waiting(reviewer) == [image.pk]

    def test_not_what_i_decided_in_this_round(
        self, reviewer, other_reviewer, campaign, request_of
    ) -> None:
        Campaign.objects.filter(pk=campaign.pk).update(required_approvals=2)
        image = request_of(campaign)[0]
        review.decide(image.pk, "approve", Actor.of(reviewer))
        assert self.waiting(reviewer) == []
        assert self.waiting(other_reviewer) == [image.pk]

    def test_a_revoke_starts_a_round_in_which_i_may_decide_again(
        self, reviewer, admin_user, campaign, request_of
    ) -> None:
        image = request_of(campaign)[0]
        review.decide(image.pk, "reject", Actor.of(reviewer), note="blurry")
        assert self.waiting(reviewer) == []
        review.revoke(image.pk, Actor.of(admin_user), note="looked again")
        assert self.waiting(reviewer) == [image.pk]

    def test_not_my_own_request_unless_self_approval(self, reviewer, campaign, request_of) -> None:
        mine = request_of(campaign, requested_by=reviewer)[0]
        anyones = request_of(campaign)[0]
        assert self.waiting(reviewer) == [anyones.pk]
        Campaign.objects.filter(pk=campaign.pk).update(allow_self_approval=True)
        assert self.waiting(reviewer) == sorted([mine.pk, anyones.pk])

    def test_an_outside_reviewer_has_only_the_campaign_of_their_link(
        self, campaign, request_of
    ) -> None:
        image = request_of(campaign)[0]
        guest = Actor(email="guest@example.com")
        assert list(review.waiting_for(guest)) == []
        assert [i.pk for i in review.waiting_for(guest, campaign=campaign)] == [image.pk]
        ShareLink.objects.create(
            campaign=campaign,
            email="guest@example.com",
            expires_at=timezone.now() + timedelta(days=1),
        )
        review.decide(image.pk, "approve", guest)
        assert list(review.waiting_for(guest, campaign=campaign)) == []


class ScreenPageTests:
    def test_needs_the_approve_permission(self, client, staff_user) -> None:
        client.force_login(staff_user("view_generatedimage", username="lou"))
        assert client.get(SCREEN).status_code == 403

    def test_groups_variants_by_request_oldest_first(
        self, client, reviewer, campaign, request_of
    ) -> None:
        first = request_of(campaign, n=3, prompt="Lighthouse at dusk")
        second = request_of(campaign, n=2)
        client.force_login(reviewer)
        response = client.get(SCREEN)
        assert response.status_code == 200
        groups = response.context["groups"]
        assert [[i.pk for i in g.images] for g in groups] == [
            [i.pk for i in first],
            [i.pk for i in second],
        ]
        assert groups[0].next_anchor == groups[1].anchor
        html = response.content.decode()
        assert "5 images wait for your review." in html
        assert "Lighthouse at dusk" in html
        assert html.count('data-imagen-variant aria-label="Image #') == 5
        # "Keep this one" only where there is another to reject.
        assert html.count("data-imagen-keep>") == 5
        assert "imagen_assets/review.js" in html

    def test_images_come_through_the_permission_checked_views(
        self, client, reviewer, campaign, request_of
    ) -> None:
        # The images' storage may be private: its own URLs (/media/...) would answer 404.
        (image,) = request_of(campaign, n=1)
        GeneratedImage.objects.filter(pk=image.pk).update(
            file="imagen/spring/1-0.jpg",
            thumbnail="imagen/spring/thumbs/1-0.jpg",
            width=64,
            height=64,
        )
        client.force_login(reviewer)
        html = client.get(SCREEN).content.decode()
        shown = re.findall(r'<img src="([^"]+)"', html)
        assert shown == [files.thumbnail_url(image)]
        assert "thumbs/1-0.jpg" not in html

    def test_filters_by_campaign_with_counts_per_campaign(
        self, client, reviewer, campaign, request_of
    ) -> None:
        mine = request_of(campaign, n=2)
        other = Campaign.objects.create(name="Autumn", slug="autumn")
        request_of(other)
        client.force_login(reviewer)
        response = client.get(SCREEN, {"campaign": campaign.pk})
        assert shown_ids(response) == [i.pk for i in mine]
        assert response.context["count"] == 2
        assert response.context["total"] == 3
        html = response.content.decode()
        assert "All campaigns (3)" in html
        assert "Autumn (1)" in html
        assert client.get(SCREEN, {"campaign": "x"}).context["count"] == 3

    def test_nothing_waits(self, client, reviewer) -> None:
        client.force_login(reviewer)
        assert "Nothing waits for your review" in client.get(SCREEN).content.decode()

    def test_pages_through_the_images(self, client, reviewer, campaign, request_of) -> None:
        images = [image for _ in range(PER_PAGE // 4 + 2) for image in request_of(campaign, n=4)]
        client.force_login(reviewer)
        first = client.get(SCREEN)
        assert len(shown_ids(first)) == PER_PAGE
        second = client.get(SCREEN, {"page": 2})
        assert shown_ids(first) + shown_ids(second) == [i.pk for i in images]
        assert "Page 2 of 2" in second.content.decode()

    @pytest.mark.parametrize("n", [10, 200])
    def test_fixed_number_of_queries(
        self,
        client,
        reviewer,
        other_reviewer,
        campaign,
        request_of,
        n,
        django_assert_max_num_queries,
    ) -> None:
        Campaign.objects.filter(pk=campaign.pk).update(required_approvals=2)
        images = [image for _ in range(n // 2) for image in request_of(campaign, n=2)]
        # Comments and a first approval on every other image: prefetched, not per card.
        for image in images[::2]:
            review.decide(image.pk, "approve", Actor.of(other_reviewer))
            review.comment(image.pk, Actor.of(other_reviewer), "nice light")
        client.force_login(reviewer)
        # session, user, the user's permissions (2), the campaign counts, the images, their
        # comments, their decisions.
        with django_assert_max_num_queries(8):
            response = client.get(SCREEN)
        assert len(shown_ids(response)) == min(n, PER_PAGE)
        assert "1 of 2 approvals" in response.content.decode()


class ScreenDecisionTests:
    def post(self, client: Any, image: GeneratedImage, action: str, **data: Any) -> Any:
        return client.post(SCREEN, {"action": action, "image": image.pk, **data})

    def test_approve_goes_back_to_the_same_place(
        self, client, reviewer, campaign, request_of
    ) -> None:
        first, second = request_of(campaign, n=2)
        nxt = request_of(campaign)[0]
        client.force_login(reviewer)
        response = self.post(
            client,
            first,
            "approve",
            campaign=campaign.pk,
            task=first.task_id,
            next_anchor=f"request-{nxt.task_id}",
        )
        first.refresh_from_db()
        assert first.review_status == "approved"
        assert messages_of(response) == [f"Image #{first.pk} approved."]
        url = urlsplit(response["Location"])
        assert url.path == SCREEN
        assert parse_qs(url.query) == {"campaign": [str(campaign.pk)]}
        # The request still has an image waiting for me: back to it.
        assert url.fragment == f"request-{first.task_id}"

        response = self.post(
            client, second, "approve", task=second.task_id, next_anchor=f"request-{nxt.task_id}"
        )
        # Its last image decided: on to the next request.
        assert urlsplit(response["Location"]).fragment == f"request-{nxt.task_id}"

    def test_an_approval_short_of_the_policy_says_how_many(
        self, client, reviewer, campaign, request_of
    ) -> None:
        Campaign.objects.filter(pk=campaign.pk).update(required_approvals=2)
        image = request_of(campaign)[0]
        client.force_login(reviewer)
        response = self.post(client, image, "approve", note="good")
        image.refresh_from_db()
        assert image.review_status == "pending"
        assert messages_of(response) == [f"Your approval of image #{image.pk} is recorded: 1 of 2."]

    def test_reject_needs_a_reason_and_records_nothing_without(
        self, client, reviewer, campaign, request_of
    ) -> None:
        image = request_of(campaign)[0]
        client.force_login(reviewer)
        response = self.post(client, image, "reject", note="  ")
        assert messages_of(response) == ["Say why the image is rejected."]
        assert not ReviewDecision.objects.exists()
        client.get(SCREEN)  # shows, and so clears, the message
        response = self.post(client, image, "reject", note="logo warped")
        image.refresh_from_db()
        assert (image.review_status, image.review_note) == ("rejected", "logo warped")
        assert messages_of(response) == [f"Image #{image.pk} rejected."]

    def test_reject_needs_the_reject_permission(self, client, staff_user, campaign, request_of):
        image = request_of(campaign)[0]
        client.force_login(staff_user("approve_generatedimage", username="ann"))
        assert b"data-imagen-reject" not in client.get(SCREEN).content
        response = self.post(client, image, "reject", note="no")
        assert messages_of(response) == ["You may approve images but not reject them."]
        assert not ReviewDecision.objects.exists()

    def test_a_refusal_shows_the_review_error(self, client, reviewer, campaign, request_of):
        image = request_of(campaign, requested_by=reviewer)[0]
        client.force_login(reviewer)
        response = self.post(client, image, "approve")
        assert response.status_code == 302
        assert messages_of(response) == [
            f"Image #{image.pk} was requested by you; another reviewer must decide "
            "(Spring launch does not allow self-approval)."
        ]
        image.refresh_from_db()
        assert image.review_status == "pending"

    def test_comment(self, client, reviewer, campaign, request_of) -> None:
        image = request_of(campaign)[0]
        client.force_login(reviewer)
        response = self.post(client, image, "comment", note="Try a warmer sky", task=image.task_id)
        assert messages_of(response) == [f"Comment added to image #{image.pk}."]
        assert list(Comment.objects.values_list("author_label", "text")) == [
            ("rita", "Try a warmer sky")
        ]
        # Still waiting for my decision: the page shows the thread on the card.
        assert urlsplit(response["Location"]).fragment == f"request-{image.task_id}"
        assert "Try a warmer sky" in client.get(SCREEN).content.decode()
        response = self.post(client, image, "comment", note="")
        assert messages_of(response) == ["Write a comment."]

    def test_incomplete_form(self, client, reviewer) -> None:
        client.force_login(reviewer)
        response = client.post(SCREEN, {"action": "approve", "image": "x"})
        assert messages_of(response) == ["Nothing was decided: the form was incomplete."]

    def test_keep_one_rejects_the_others_with_the_reason(
        self, client, reviewer, campaign, request_of
    ) -> None:
        images = request_of(campaign, n=3)
        client.force_login(reviewer)
        response = client.post(
            SCREEN,
            {
                "action": "keep",
                "keep": images[1].pk,
                "group": [image.pk for image in images],
                "note": "Another variant of this request was kept.",
                "next_anchor": "request-999",
            },
        )
        statuses = {
            image.pk: (image.review_status, image.review_note)
            for image in GeneratedImage.objects.all()
        }
        reason = "Another variant of this request was kept."
        assert statuses == {
            images[0].pk: ("rejected", reason),
            images[1].pk: ("approved", ""),
            images[2].pk: ("rejected", reason),
        }
        kept = f"Image #{images[1].pk} approved. Rejected 2 other images."
        assert messages_of(response) == [kept]
        assert urlsplit(response["Location"]).fragment == "request-999"

    def test_keep_is_all_or_nothing(self, client, reviewer, admin_user, campaign, request_of):
        images = request_of(campaign, n=3)
        review.decide(images[2].pk, "reject", Actor.of(admin_user), note="cropped")
        client.force_login(reviewer)
        response = client.post(
            SCREEN,
            {"action": "keep", "keep": images[0].pk, "group": [i.pk for i in images], "note": "x"},
        )
        assert messages_of(response) == [
            f"Image #{images[2].pk} was already rejected; reload to see the decision."
        ]
        assert ReviewDecision.objects.filter(reviewer=reviewer).count() == 0
        images[0].refresh_from_db()
        images[1].refresh_from_db()
        assert (images[0].review_status, images[1].review_status) == ("pending", "pending")

    def test_keep_needs_a_reason_for_the_others(self, client, reviewer, campaign, request_of):
        images = request_of(campaign, n=2)
        client.force_login(reviewer)
        response = client.post(
            SCREEN,
            {"action": "keep", "keep": images[0].pk, "group": [i.pk for i in images], "note": ""},
        )
        assert messages_of(response) == ["Say why the other images are rejected."]
        assert not ReviewDecision.objects.exists()


class IndexCountTests:
    def test_the_index_counts_what_waits_for_this_user(
        self, client, reviewer, other_reviewer, campaign, request_of
    ) -> None:
        Campaign.objects.filter(pk=campaign.pk).update(required_approvals=2)
        images = request_of(campaign, n=3)
        request_of(campaign, requested_by=reviewer)
        review.decide(images[0].pk, "approve", Actor.of(reviewer))
        client.force_login(reviewer)
        html = client.get(reverse("admin:index")).content.decode()
        assert "2 images wait for your review" in html
        assert f'href="{SCREEN}"' in html
        client.force_login(other_reviewer)
        index = client.get(reverse("admin:index"))
        assert "4 images wait for your review" in index.content.decode()
        app_index = client.get(reverse("admin:app_list", args=["imagen_assets"]))
        assert "4 images wait for your review" in app_index.content.decode()

    def test_one_image_and_none(self, client, reviewer, campaign, request_of) -> None:
        client.force_login(reviewer)
        assert "0 images wait for your review" in client.get("/admin/").content.decode()
        request_of(campaign)
        assert "1 image waits for your review" in client.get("/admin/").content.decode()

    def test_no_count_for_who_may_not_review(self, client, staff_user, campaign, request_of):
        request_of(campaign)
        client.force_login(staff_user("view_generatedimage", username="lou"))
        assert "wait" not in client.get("/admin/").content.decode()
