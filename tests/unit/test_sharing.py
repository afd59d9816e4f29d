"""Outside reviewers (docs/workflow.md, "Outside reviewers"): signed, expiring, revocable
links to one campaign, and the page outside the admin that they open."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.core import signing
from django.core.files.base import ContentFile
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from unit_helpers import image_bytes, make_campaign, make_task

from imagen_assets import outside, sharing
from imagen_assets.activity import Actor
from imagen_assets.models import (
    Activity,
    Campaign,
    Comment,
    GeneratedImage,
    GenerationTask,
    ReviewDecision,
    ShareLink,
)
from imagen_assets.review import ReviewError
from imagen_assets.status import CampaignStatus, ReviewStatus

pytestmark = pytest.mark.django_db

THUMB = image_bytes("JPEG", (32, 24))


@pytest.fixture
def owner() -> User:
    person = User.objects.create_user("olivia", password="pw")
    person.user_permissions.add(Permission.objects.get(codename="share_campaign"))
    return person


@pytest.fixture
def campaign() -> Any:
    return make_campaign("spring")


def ready_image(campaign: Any, prompt: str = "a red bicycle") -> GeneratedImage:
    task = make_task(campaign, status="succeeded", image_status="succeeded")
    GenerationTask.objects.filter(pk=task.pk).update(prompt=prompt)
    image = task.images.get()
    image.file.save("orig.png", ContentFile(image_bytes("PNG")), save=False)
    image.thumbnail.save("thumb.jpg", ContentFile(THUMB), save=False)
    image.width, image.height = 64, 48
    image.save()
    return image


def share(campaign: Any, owner: User, email: str = "Anna@Agency.example", **kw: Any) -> Any:
    return sharing.share(campaign.pk, Actor(user=owner), email, **kw)


def page(shared: Any) -> str:
    return f"/imagen/review/{sharing.token_for(shared.link)}/"


class ShareTests:
    def test_creates_a_link_logs_it_and_returns_its_url(self, campaign, owner, settings):
        settings.IMAGEN_ASSETS = {**settings.IMAGEN_ASSETS, "SITE_URL": None}
        shared = share(campaign, owner, days=3)

        link = ShareLink.objects.get()
        assert shared.link == link
        assert link.email == "anna@agency.example"  # one person, one reviewer
        assert link.created_by == owner
        assert link.expires_at - link.created_at == timedelta(days=3)
        assert shared.url.startswith("/imagen/review/")
        assert sharing.link_for_token(shared.url.split("/")[-2]) == link
        (row,) = Activity.objects.filter(verb=Activity.Verb.SHARED)
        assert (row.actor, row.note) == (owner, "anna@agency.example")
        assert sharing.link_for_activity(row) == link
        assert LogEntry.objects.filter(user=owner).exists()

    def test_the_url_is_absolute_with_site_url(self, campaign, owner, settings):
        settings.IMAGEN_ASSETS = {**settings.IMAGEN_ASSETS, "SITE_URL": "https://m.example/"}

        assert share(campaign, owner).url.startswith("https://m.example/imagen/review/")

    @pytest.mark.parametrize(
        ("email", "days", "message"),
        [
            ("not-an-address", 7, "is not an e-mail address"),
            ("a@b.example", 0, "1 to 90 days"),
            ("a@b.example", 91, "1 to 90 days"),
        ],
    )
    def test_refuses_bad_input_and_records_nothing(self, campaign, owner, email, days, message):
        with pytest.raises(ReviewError, match=message):
            share(campaign, owner, email, days=days)

        assert not ShareLink.objects.exists()
        assert not Activity.objects.exists()

    def test_refuses_without_the_share_permission(self, campaign):
        someone = User.objects.create_user("sam")

        with pytest.raises(ReviewError, match="sam may not invite outside reviewers"):
            share(campaign, someone)
        assert not ShareLink.objects.exists()

    def test_refuses_in_an_archived_campaign(self, campaign, owner):
        Campaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.ARCHIVED)

        with pytest.raises(ReviewError, match="archived"):
            share(campaign, owner)
        assert not ShareLink.objects.exists()


class RevokeTests:
    def test_revokes_at_once_and_logs_it(self, campaign, owner):
        shared = share(campaign, owner)
        token = sharing.token_for(shared.link)

        sharing.revoke_link(shared.link.pk, Actor(user=owner))

        assert ShareLink.objects.get().revoked_at is not None
        assert Activity.objects.filter(verb=Activity.Verb.SHARE_REVOKED).count() == 1
        with pytest.raises(sharing.ExpiredLink):
            sharing.link_for_token(token)
        with pytest.raises(ReviewError, match="already revoked"):
            sharing.revoke_link(shared.link.pk, Actor(user=owner))

    def test_refuses_without_permission_and_changes_nothing(self, campaign, owner):
        shared = share(campaign, owner)

        with pytest.raises(ReviewError, match="may not revoke"):
            sharing.revoke_link(shared.link.pk, Actor(user=User.objects.create_user("sam")))
        assert ShareLink.objects.get().revoked_at is None

    def test_an_unknown_link(self, owner):
        with pytest.raises(ReviewError, match="no outside reviewer link #99"):
            sharing.revoke_link(99, Actor(user=owner))


class TokenTests:
    def test_a_tampered_token_is_invalid(self, campaign, owner):
        token = sharing.token_for(share(campaign, owner).link)

        for bad in [token[:-1] + ("A" if token[-1] != "A" else "B"), "x" + token, "", "1"]:
            with pytest.raises(sharing.InvalidLink):
                sharing.link_for_token(bad)

    def test_the_id_signed_elsewhere_is_invalid(self, campaign, owner):
        link = share(campaign, owner).link

        with pytest.raises(sharing.InvalidLink):
            sharing.link_for_token(signing.dumps(link.pk))  # Django's default salt

    def test_a_deleted_link_is_invalid(self, campaign, owner):
        link = share(campaign, owner).link
        token = sharing.token_for(link)
        link.delete()

        with pytest.raises(sharing.InvalidLink):
            sharing.link_for_token(token)

    def test_an_expired_link(self, campaign, owner):
        link = share(campaign, owner).link
        token = sharing.token_for(link)
        ShareLink.objects.filter(pk=link.pk).update(expires_at=timezone.now())

        with pytest.raises(sharing.ExpiredLink):
            sharing.link_for_token(token)

    def test_no_token_outlives_the_longest_link(self, campaign, owner, monkeypatch):
        link = share(campaign, owner, days=1).link
        token = sharing.token_for(link)
        # The row alone would still let it in: only the signature's age refuses it.
        far = timezone.now() + timedelta(days=400)
        ShareLink.objects.filter(pk=link.pk).update(expires_at=far)
        later = time.time() + (sharing.MAX_DAYS + 1) * 86400
        monkeypatch.setattr(signing.time, "time", lambda: later)

        with pytest.raises(sharing.ExpiredLink):
            sharing.link_for_token(token)


class PageTests:
    def test_shows_only_the_images_waiting_for_this_address(self, campaign, owner):
        waiting = ready_image(campaign, "spring meadow")
        decided_by_me = ready_image(campaign, "spring decided")
        approved = ready_image(campaign, "spring approved")
        GeneratedImage.objects.filter(pk=approved.pk).update(review_status=ReviewStatus.APPROVED)
        other = ready_image(make_campaign("secret"), "the secret launch")
        shared = share(campaign, owner)
        ReviewDecision.objects.create(
            image=decided_by_me,
            round=1,
            decision="approve",
            reviewer_email="anna@agency.example",
            reviewer_label="anna@agency.example",
        )

        response = Client().get(page(shared))

        assert response.status_code == 200
        html = response.content.decode()
        assert [c["image"] for c in response.context["cards"]] == [waiting]
        assert "spring meadow" in html
        for hidden in ["spring decided", "spring approved", "the secret launch", "Secret"]:
            assert hidden not in html
        # Thumbnails only, through the token's own view; no storage URL, no admin.
        assert f"thumbnail/{waiting.pk}/" in html
        assert waiting.file.url not in html and waiting.thumbnail.url not in html
        assert "/admin/" not in html
        assert response["Cache-Control"].startswith("max-age=0")
        assert response["Referrer-Policy"] == "no-referrer"
        assert ShareLink.objects.get().last_used_at is not None
        assert other.pk not in [c["image"].pk for c in response.context["cards"]]

    def test_approve_is_recorded_under_the_address(self, campaign, owner):
        image = ready_image(campaign)
        shared = share(campaign, owner)

        response = Client().post(page(shared), {"image": image.pk, "action": "approve"})

        assert response.status_code == 302
        assert response["Location"].endswith("?done=approve")
        decision = ReviewDecision.objects.get()
        assert (decision.reviewer, decision.reviewer_email) == (None, "anna@agency.example")
        image.refresh_from_db()
        assert image.review_status == ReviewStatus.APPROVED
        row = Activity.objects.get(verb=Activity.Verb.APPROVED)
        assert (row.actor, row.actor_label) == (None, "anna@agency.example")
        followed = Client().get(response["Location"])
        assert "Approved. Thank you." in followed.content.decode()
        assert followed.context["cards"] == []

    def test_reject_needs_a_reason(self, campaign, owner):
        image = ready_image(campaign)
        shared = share(campaign, owner)
        client = Client()

        response = client.post(page(shared), {"image": image.pk, "action": "reject"})

        assert response.status_code == 400
        assert "Say why the image is rejected." in response.content.decode()
        assert not ReviewDecision.objects.exists()
        response = client.post(
            page(shared), {"image": image.pk, "action": "reject", "note": "logo cut off"}
        )
        assert response.status_code == 302
        image.refresh_from_db()
        assert (image.review_status, image.review_note) == (ReviewStatus.REJECTED, "logo cut off")

    def test_comment_is_recorded_under_the_address(self, campaign, owner):
        image = ready_image(campaign)
        shared = share(campaign, owner)

        response = Client().post(
            page(shared), {"image": image.pk, "action": "comment", "note": "warmer light?"}
        )

        assert response.status_code == 302
        comment = Comment.objects.get()
        assert (comment.author_label, comment.text) == ("anna@agency.example", "warmer light?")
        assert ReviewDecision.objects.count() == 0

    def test_an_image_of_another_campaign_is_refused_like_any_other(self, campaign, owner):
        other = ready_image(make_campaign("secret"))
        shared = share(campaign, owner)

        response = Client().post(page(shared), {"image": other.pk, "action": "approve"})

        assert response.status_code == 400
        assert "no longer waits for your review" in response.content.decode()
        assert not ReviewDecision.objects.exists()
        assert GeneratedImage.objects.get(pk=other.pk).review_status == ReviewStatus.PENDING

    def test_posts_need_the_csrf_token(self, campaign, owner):
        image = ready_image(campaign)
        shared = share(campaign, owner)

        response = Client(enforce_csrf_checks=True).post(
            page(shared), {"image": image.pk, "action": "approve"}
        )

        assert response.status_code == 403
        assert not ReviewDecision.objects.exists()

    def test_refusals_leak_nothing(self, campaign, owner):
        ready_image(campaign)
        shared = share(campaign, owner)
        client = Client()

        bad = client.get(page(shared)[:-3] + "xx/")
        sharing.revoke_link(shared.link.pk, Actor(user=owner))
        gone = client.get(page(shared))

        assert (bad.status_code, gone.status_code) == (404, 410)
        for response in (bad, gone):
            html = response.content.decode()
            assert "Spring" not in html and "anna" not in html and "bicycle" not in html

    def test_the_page_is_served_under_login_required_middleware(self, campaign, owner, settings):
        settings.MIDDLEWARE = [
            *settings.MIDDLEWARE,
            "django.contrib.auth.middleware.LoginRequiredMiddleware",
        ]
        image = ready_image(campaign)
        shared = share(campaign, owner)
        client = Client()

        assert client.get(page(shared)).status_code == 200
        thumb = client.get(f"{page(shared)}thumbnail/{image.pk}/")
        assert thumb.status_code == 200
        # The staff file views are not opened up by it.
        assert client.get(f"/imagen/original/{image.pk}/").status_code == 302


class OutsideThumbnailTests:
    def test_serves_the_thumbnail_of_a_waiting_image_only(self, campaign, owner):
        image = ready_image(campaign)
        other = ready_image(make_campaign("secret"))
        shared = share(campaign, owner)
        client = Client()

        response = client.get(f"{page(shared)}thumbnail/{image.pk}/")

        assert response.status_code == 200
        assert b"".join(response.streaming_content) == THUMB
        assert client.get(f"{page(shared)}thumbnail/{other.pk}/").status_code == 404
        assert client.get(f"{page(shared)[:-3]}xx/thumbnail/{image.pk}/").status_code == 404


class RateLimitTests:
    def test_per_token(self, campaign, owner, monkeypatch):
        monkeypatch.setitem(outside.RATE_LIMITS, "page", 3)
        shared = share(campaign, owner)
        client = Client()

        codes = [client.get(page(shared)).status_code for _ in range(4)]

        assert codes == [200, 200, 200, 429]
        response = client.get(page(shared))
        assert 1 <= int(response["Retry-After"]) <= 61
        assert "Too many requests" in response.content.decode()

    def test_per_client_address_across_tokens(self, campaign, owner, monkeypatch):
        monkeypatch.setitem(outside.RATE_LIMITS, "page", 3)
        shared = share(campaign, owner)
        client = Client()
        # Guessing tokens counts too: a different (bad) token each time.
        codes = [client.get(f"/imagen/review/guess{n}/").status_code for n in range(3)]

        assert codes == [404, 404, 404]
        assert client.get(page(shared)).status_code == 429
        assert Client(REMOTE_ADDR="10.0.0.9").get(page(shared)).status_code == 200


class CommandTests:
    def test_prints_the_link_and_revokes_it(self, campaign, owner, settings):
        settings.IMAGEN_ASSETS = {**settings.IMAGEN_ASSETS, "SITE_URL": None}
        out, err = StringIO(), StringIO()

        call_command(
            "imagen_share",
            "spring",
            "--email",
            "b@c.example",
            "--user",
            "olivia",
            "--json",
            stdout=out,
            stderr=err,
        )

        printed = json.loads(out.getvalue())
        link = ShareLink.objects.get()
        assert printed["id"] == link.pk and printed["email"] == "b@c.example"
        assert sharing.link_for_token(printed["url"].split("/")[-2]) == link
        assert "SITE_URL" in err.getvalue()
        out = StringIO()
        call_command("imagen_share", "--revoke", str(link.pk), "--user", "olivia", stdout=out)
        assert f"Link #{link.pk} revoked." in out.getvalue()
        assert not ShareLink.objects.get().active

    def test_refusals_exit_1_with_the_reason_and_a_json_line(self, campaign):
        User.objects.create_user("sam")

        for slug, reason in (("spring", "sam may not invite"), ("nope", "no campaign 'nope'")):
            out, err = StringIO(), StringIO()
            with pytest.raises(CommandError) as refused:
                call_command(
                    "imagen_share",
                    slug,
                    "--email",
                    "b@c.example",
                    "--user",
                    "sam",
                    "--json",
                    stdout=out,
                    stderr=err,
                )
            assert refused.value.returncode == 1
            assert reason in err.getvalue()
            line = json.loads(out.getvalue())
            assert (line["campaign"], line["ok"]) == (slug, False)
            assert reason in line["error"]
        assert not ShareLink.objects.exists()
        with pytest.raises(CommandError) as misused:
            call_command("imagen_share", "spring", "--user", "sam")
        assert misused.value.returncode == 2
        with pytest.raises(CommandError, match="no user 'ghost'"):
            call_command("imagen_share", "spring", "--email", "b@c.example", "--user", "ghost")
