"""The workflow in the campaign and image admin: status, policy through review.set_policy,
the steps as buttons, timelines, comments, revoke, and approved images protected."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.contrib.messages import get_messages

from imagen_assets import review
from imagen_assets.activity import Actor
from imagen_assets.models import Activity, Campaign, Comment, GeneratedImage
from imagen_assets.status import CampaignStatus

pytestmark = pytest.mark.django_db

CAMPAIGNS = "/admin/imagen_assets/campaign/"
IMAGES = "/admin/imagen_assets/generatedimage/"


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def change_url(obj: Any) -> str:
    base = CAMPAIGNS if isinstance(obj, Campaign) else IMAGES
    return f"{base}{obj.pk}/change/"


def campaign_form(campaign: Campaign, **changes: Any) -> dict[str, Any]:
    data = {
        "name": campaign.name,
        "slug": campaign.slug,
        "brief": "",
        "brand_prompt": campaign.brand_prompt,
        "default_provider": "",
        "default_aspect_ratio": "1:1",
        "default_negative_prompt": "",
        "budget": "50",
        "required_approvals": campaign.required_approvals,
        "reviewer_group": campaign.reviewer_group_id or "",
    }
    if campaign.allow_self_approval:
        data["allow_self_approval"] = "on"
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def set_status(campaign: Campaign, status: str) -> None:
    Campaign.objects.filter(pk=campaign.pk).update(status=status)
    campaign.refresh_from_db()


class CampaignListTests:
    def test_status_column_and_filter(self, admin_client, campaign) -> None:
        other = Campaign.objects.create(name="Autumn", slug="autumn")
        set_status(other, CampaignStatus.IN_REVIEW)
        response = admin_client.get(CAMPAIGNS)
        html = response.content.decode()
        assert 'class="imagen-badge imagen-campaign-in_review">In review<' in html
        assert 'class="imagen-badge imagen-campaign-draft">Draft<' in html
        filtered = admin_client.get(CAMPAIGNS, {"status__exact": "in_review"})
        assert [c.pk for c in filtered.context["cl"].result_list] == [other.pk]


class PolicyTests:
    def test_saved_through_set_policy_and_logged(self, admin_client, campaign) -> None:
        brand = Group.objects.create(name="Brand")
        response = admin_client.post(
            change_url(campaign),
            campaign_form(campaign, required_approvals=2, reviewer_group=brand.pk),
        )
        assert response.status_code == 302
        campaign.refresh_from_db()
        assert (campaign.required_approvals, campaign.reviewer_group) == (2, brand)
        row = Activity.objects.get(verb=Activity.Verb.POLICY_CHANGED)
        assert row.note == "2 approval(s), reviewers: Brand, self-approval not allowed"

    def test_unchanged_policy_records_nothing(self, admin_client, campaign) -> None:
        admin_client.post(change_url(campaign), campaign_form(campaign, name="Renamed"))
        campaign.refresh_from_db()
        assert campaign.name == "Renamed"
        assert not Activity.objects.filter(verb=Activity.Verb.POLICY_CHANGED).exists()

    def test_read_only_without_the_permission(self, client, staff_user, campaign) -> None:
        editor = staff_user("change_campaign", "view_campaign", username="ed")
        client.force_login(editor)
        page = client.get(change_url(campaign))
        assert "required_approvals" not in page.context["adminform"].form.fields
        assert 'name="required_approvals"' not in page.content.decode()
        client.post(change_url(campaign), campaign_form(campaign, required_approvals=3))
        campaign.refresh_from_db()
        assert campaign.required_approvals == 1

    def test_read_only_while_in_review(self, admin_client, campaign) -> None:
        set_status(campaign, CampaignStatus.IN_REVIEW)
        page = admin_client.get(change_url(campaign))
        assert "required_approvals" not in page.context["adminform"].form.fields
        admin_client.post(change_url(campaign), campaign_form(campaign, required_approvals=3))
        campaign.refresh_from_db()
        assert campaign.required_approvals == 1

    def test_out_of_range_is_a_form_error(self, admin_client, campaign) -> None:
        response = admin_client.post(
            change_url(campaign), campaign_form(campaign, required_approvals=11)
        )
        assert response.status_code == 200
        assert "required_approvals" in response.context["adminform"].form.errors


class CampaignStepTests:
    def step(self, client: Any, campaign: Campaign, step: str, note: str = "") -> Any:
        return client.post(f"{CAMPAIGNS}{campaign.pk}/workflow/", {"step": step, "note": note})

    def buttons(self, client: Any, campaign: Campaign) -> list[str]:
        html = client.get(change_url(campaign)).content.decode()
        steps = ["submit", "sign_off", "request_changes", "archive", "reopen"]
        return [step for step in steps if f'name="step" value="{step}"' in html]

    def test_the_whole_path_with_four_eyes(
        self, client, admin_client, admin_user, staff_user, campaign, make_image
    ) -> None:
        image = make_image(campaign)
        owner = staff_user("change_campaign", "view_campaign", username="owen")
        client.force_login(owner)
        assert self.buttons(client, campaign) == ["submit", "archive"]
        response = self.step(client, campaign, "submit")
        assert messages_of(response) == [
            "Spring launch submitted for review; its reviewers are told."
        ]
        campaign.refresh_from_db()
        assert campaign.status == "in_review"
        # The owner may not sign off; a reviewer may, once nothing is pending.
        assert self.buttons(client, campaign) == ["archive"]
        assert self.buttons(admin_client, campaign) == ["sign_off", "request_changes", "archive"]
        response = self.step(admin_client, campaign, "sign_off")
        assert messages_of(response) == ["1 image(s) of Spring launch still wait for review."]
        review.decide(image.pk, "approve", Actor.of(admin_user))
        admin_client.get(change_url(campaign))  # shows, and so clears, the message
        response = self.step(admin_client, campaign, "request_changes")
        assert messages_of(response) == ["Say what should change in Spring launch."]
        admin_client.get(change_url(campaign))
        response = self.step(admin_client, campaign, "sign_off", note="Ship it")
        assert messages_of(response) == [
            "Spring launch signed off: its approved images are ready for use."
        ]
        campaign.refresh_from_db()
        assert campaign.status == "approved"
        assert self.buttons(client, campaign) == ["archive", "reopen"]
        self.step(client, campaign, "archive")
        campaign.refresh_from_db()
        assert campaign.status == "archived"
        assert self.buttons(client, campaign) == ["reopen"]
        self.step(client, campaign, "reopen")
        campaign.refresh_from_db()
        assert campaign.status == "draft"

    def test_request_changes_with_a_note(self, admin_client, campaign, make_image) -> None:
        make_image(campaign)
        set_status(campaign, CampaignStatus.IN_REVIEW)
        response = self.step(admin_client, campaign, "request_changes", note="Warmer colours")
        assert messages_of(response) == ["Changes requested on Spring launch."]
        campaign.refresh_from_db()
        assert campaign.status == "changes_requested"
        assert Activity.objects.filter(note="Warmer colours").exists()

    def test_refusals_change_nothing(self, client, staff_user, campaign) -> None:
        client.force_login(staff_user("view_campaign", username="vic"))
        assert self.buttons(client, campaign) == []
        response = self.step(client, campaign, "archive")
        assert messages_of(response) == ["vic may not archive campaigns."]
        campaign.refresh_from_db()
        assert campaign.status == "draft"
        response = self.step(client, campaign, "launch")
        assert response.status_code == 302
        assert client.get(f"{CAMPAIGNS}{campaign.pk}/workflow/").status_code == 405

    def test_the_timeline_newest_first(self, admin_client, admin_user, campaign, make_image):
        image = make_image(campaign)
        review.comment(image.pk, Actor.of(admin_user), "first")
        review.archive(campaign.pk, Actor.of(admin_user), note="season over")
        html = admin_client.get(change_url(campaign)).content.decode()
        timeline = html[html.index('id="timeline"') :]
        assert timeline.index("archived") < timeline.index("commented")
        assert "season over" in timeline
        assert f'href="{IMAGES}{image.pk}/change/"' in timeline


class ImagePageTests:
    def test_round_decisions_comments_and_timeline(
        self, admin_client, staff_user, campaign, make_image
    ) -> None:
        Campaign.objects.filter(pk=campaign.pk).update(required_approvals=2)
        image = make_image(campaign)
        rita = staff_user("approve_generatedimage", username="rita")
        review.decide(image.pk, "approve", Actor.of(rita), note="crisp")
        response = admin_client.get(change_url(image))
        html = response.content.decode()
        assert "1 of 2 approvals" in html
        assert "crisp" in html
        timeline = html[html.index('id="timeline"') :]
        assert "rita" in timeline and "approved" in timeline
        response = admin_client.post(f"{IMAGES}{image.pk}/comment/", {"note": "Sky too pale"})
        assert messages_of(response) == ["Comment added."]
        html = admin_client.get(change_url(image)).content.decode()
        comments = html[html.index('id="comments"') :]
        assert "Sky too pale" in comments
        response = admin_client.post(f"{IMAGES}{image.pk}/comment/", {"note": " "})
        assert messages_of(response) == ["Write a comment."]
        assert Comment.objects.count() == 1

    def test_revoke_needs_its_permission_and_a_reason(
        self, client, admin_client, staff_user, campaign, make_image
    ) -> None:
        image = make_image(campaign)
        review.decide(image.pk, "approve", Actor.of(staff_user("approve_generatedimage")))
        reviewer = staff_user("approve_generatedimage", "view_generatedimage", username="rita")
        client.force_login(reviewer)
        assert "imagen-revoke-button" not in client.get(change_url(image)).content.decode()
        assert client.post(f"{IMAGES}{image.pk}/revoke/", {"note": "x"}).status_code == 403
        html = admin_client.get(change_url(image)).content.decode()
        assert "imagen-revoke-button" in html
        # A decided round takes no more approvals or rejections: only a revoke reopens it.
        assert "imagen-approve-button" not in html
        response = admin_client.post(f"{IMAGES}{image.pk}/revoke/", {"note": ""})
        assert messages_of(response) == [f"Say why the review of image #{image.pk} is revoked."]
        admin_client.get(change_url(image))
        response = admin_client.post(f"{IMAGES}{image.pk}/revoke/", {"note": "wrong logo"})
        assert messages_of(response) == [
            "Review revoked: the image waits for review again, in a new round."
        ]
        image.refresh_from_db()
        assert (image.review_status, image.review_round) == ("pending", 2)


class ProtectionTests:
    def test_an_approved_image_cannot_be_deleted(
        self, admin_client, admin_user, campaign, make_image
    ):
        image = make_image(campaign)
        review.decide(image.pk, "approve", Actor.of(admin_user))
        assert admin_client.get(f"{IMAGES}{image.pk}/delete/").status_code == 403
        assert admin_client.post(f"{IMAGES}{image.pk}/delete/", {"post": "yes"}).status_code == 403
        assert GeneratedImage.objects.filter(pk=image.pk).exists()

    def test_bulk_delete_lists_approved_images_as_protected(
        self, admin_client, admin_user, campaign, make_image
    ) -> None:
        approved = make_image(campaign)
        other = make_image(campaign)
        review.decide(approved.pk, "approve", Actor.of(admin_user))
        response = admin_client.post(
            IMAGES,
            {
                "action": "delete_selected",
                "_selected_action": [approved.pk, other.pk],
                "post": "yes",
            },
        )
        assert response.status_code == 200
        assert [str(p) for p in response.context["protected"]] == [
            f'<a href="{IMAGES}{approved.pk}/change/">{approved}</a>'
        ]
        assert GeneratedImage.objects.count() == 2

    def test_deleting_a_campaign_holding_approved_images_shows_them(
        self, admin_client, admin_user, campaign, make_image
    ) -> None:
        image = make_image(campaign)
        review.decide(image.pk, "approve", Actor.of(admin_user))
        page = admin_client.get(f"{CAMPAIGNS}{campaign.pk}/delete/")
        assert page.status_code == 200
        assert page.context["protected"]
        response = admin_client.post(f"{CAMPAIGNS}{campaign.pk}/delete/", {"post": "yes"})
        assert response.status_code == 200
        bulk = admin_client.post(
            CAMPAIGNS,
            {"action": "delete_selected", "_selected_action": [campaign.pk], "post": "yes"},
        )
        assert bulk.status_code == 200
        assert bulk.context["protected"]
        assert Campaign.objects.filter(pk=campaign.pk).exists()

    def test_pending_filter_never_lists_failed_images(self, admin_client, campaign, make_image):
        ready = make_image(campaign)
        failed = make_image(campaign, status="failed")
        GeneratedImage.objects.filter(pk=failed.pk).update(review_status="pending")
        response = admin_client.get(IMAGES, {"review_status__exact": "pending"})
        assert [row.pk for row in response.context["cl"].result_list] == [ready.pk]
        approved = admin_client.get(IMAGES, {"review_status__exact": "approved"})
        assert list(approved.context["cl"].result_list) == []
