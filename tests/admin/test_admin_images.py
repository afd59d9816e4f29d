"""The generated-images admin: the list, the image page and review (approve / reject)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from imagen_assets.models import GeneratedImage

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:imagen_assets_generatedimage_changelist")


def change_url(image: GeneratedImage) -> str:
    return reverse("admin:imagen_assets_generatedimage_change", args=[image.pk])


def approve_url(image: GeneratedImage) -> str:
    return reverse("admin:imagen_assets_generatedimage_approve", args=[image.pk])


def reject_url(image: GeneratedImage) -> str:
    return reverse("admin:imagen_assets_generatedimage_reject", args=[image.pk])


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def run_action(client: Any, action: str, images: list[GeneratedImage], **extra: Any) -> Any:
    data = {"action": action, ACTION_CHECKBOX_NAME: [i.pk for i in images], "index": "0"}
    data.update(extra)
    return client.post(CHANGELIST, data)


class ImageChangelistTests:
    def test_renders_thumbnails_badges_and_progress(
        self, admin_client, campaign, make_image, make_task, media
    ):
        ready = make_image(campaign, with_file=True)
        running = make_image(
            campaign,
            status="processing",
            task=make_task(campaign, status="processing", progress=45),
        )
        make_image(campaign, status="queued")
        make_image(campaign, status="filtered", error_message="Wave: withheld by safety filter")
        make_image(
            campaign,
            status="failed",
            task=make_task(
                campaign,
                status="failed",
                error_message="Wave: HTTP 400 [invalid_aspect_ratio]: " + "x" * 200,
            ),
        )

        response = admin_client.get(CHANGELIST)

        assert response.status_code == 200
        html = response.content.decode()
        assert f'src="/imagen/thumbnail/{ready.pk}/"' in html
        assert 'loading="lazy"' in html
        assert "Generating 45%" in html
        assert 'aria-valuenow="45"' in html
        assert "Queued" in html
        assert "Withheld" in html
        # What happened in plain words; the provider's own words on hover (issue 8).
        assert "Withheld by the provider" in html
        assert "The provider refused the request" in html
        assert "x" * 200 + "</span>" not in html
        assert "(Wave: HTTP 400 [invalid_aspect_ratio]: " + "x" * 200 + ')"' in html
        assert "(Wave: withheld by safety filter)" in html
        assert "data-imagen-open" in html  # the script reloads while these are open
        assert "imagen_assets/admin.js" in html
        assert "imagen_assets/admin.css" in html
        assert "48\N{MULTIPLICATION SIGN}32" in html
        assert running.pk in [row.pk for row in response.context["cl"].result_list]

    def test_newest_first_50_per_page_no_full_count(self, admin_client, campaign, make_image):
        for _ in range(3):
            make_image(campaign)
        cl = admin_client.get(CHANGELIST).context["cl"]
        ids = [row.pk for row in cl.result_list]
        assert ids == sorted(ids, reverse=True)
        assert cl.list_per_page == 50
        assert cl.show_full_result_count is False

    def test_query_count_does_not_grow_with_the_rows(
        self, admin_client, campaign, make_image, media, django_assert_max_num_queries
    ):
        make_image(campaign, with_file=True)
        with CaptureQueriesContext(connection) as one:
            assert admin_client.get(CHANGELIST).status_code == 200

        for index in range(29):
            make_image(
                campaign,
                with_file=index % 2 == 0,
                status="succeeded" if index % 3 else "processing",
            )
        with django_assert_max_num_queries(len(one)):
            response = admin_client.get(CHANGELIST)
        assert len(response.context["cl"].result_list) == 30

    def test_filters_and_search(self, admin_client, campaign, make_image, make_task):
        image = make_image(campaign, task=make_task(campaign, prompt="Lighthouse at dusk"))
        make_image(campaign)
        response = admin_client.get(CHANGELIST, {"q": "lighthouse"})
        assert [row.pk for row in response.context["cl"].result_list] == [image.pk]
        for query in (
            {"campaign__id__exact": campaign.pk},
            {"status__exact": "succeeded"},
            {"review_status__exact": "pending"},
            {"task__provider": "sandbox"},
        ):
            assert admin_client.get(CHANGELIST, query).status_code == 200


class ApproveActionTests:
    def test_approves_ready_images_and_explains_skipped_ones(
        self, admin_client, admin_user, campaign, make_image
    ):
        ready = make_image(campaign)
        queued = make_image(campaign, status="queued")

        response = run_action(admin_client, "approve_selected", [ready, queued])

        assert response.status_code == 302
        ready.refresh_from_db()
        queued.refresh_from_db()
        assert ready.review_status == "approved"
        assert ready.reviewed_by == admin_user
        assert ready.reviewed_at is not None
        assert queued.review_status == "none"  # not reviewable: never "pending review"
        messages = messages_of(response)
        assert "Approved 1 image." in messages
        assert any(
            m.startswith("Skipped 1 image:") and f"Image #{queued.pk} is not ready" in m
            for m in messages
        )

    def test_hidden_from_staff_without_the_permission(
        self, client, campaign, make_image, staff_user
    ):
        image = make_image(campaign)
        client.force_login(staff_user("view_generatedimage"))

        html = client.get(CHANGELIST).content.decode()
        assert "approve_selected" not in html
        assert "reject_selected" not in html

        run_action(client, "approve_selected", [image])
        image.refresh_from_db()
        assert image.review_status == "pending"

    def test_offered_to_staff_with_the_permission(self, client, campaign, make_image, staff_user):
        image = make_image(campaign)
        user = staff_user("view_generatedimage", "approve_generatedimage")
        client.force_login(user)

        html = client.get(CHANGELIST).content.decode()
        assert "approve_selected" in html
        assert "reject_selected" not in html

        run_action(client, "approve_selected", [image])
        image.refresh_from_db()
        assert image.review_status == "approved"
        assert image.reviewed_by == user


class RejectActionTests:
    def test_asks_for_the_reason_first(self, admin_client, campaign, make_image):
        image = make_image(campaign)

        response = run_action(admin_client, "reject_selected", [image])

        assert response.status_code == 200
        html = response.content.decode()
        assert "Reason" in html
        assert 'name="csrfmiddlewaretoken"' in html
        assert f'value="{image.pk}"' in html
        image.refresh_from_db()
        assert image.review_status == "pending"

    def test_refuses_an_empty_reason(self, admin_client, campaign, make_image):
        image = make_image(campaign)

        response = run_action(
            admin_client, "reject_selected", [image], imagen_reject="1", note="   "
        )

        assert response.status_code == 200
        assert "Say why the image is rejected." in response.content.decode()
        image.refresh_from_db()
        assert image.review_status == "pending"

    def test_rejects_with_who_when_and_why(self, admin_client, admin_user, campaign, make_image):
        image = make_image(campaign)
        unready = make_image(campaign, status="failed")

        response = run_action(
            admin_client,
            "reject_selected",
            [image, unready],
            imagen_reject="1",
            note="Logo distorted",
        )

        assert response.status_code == 302
        image.refresh_from_db()
        assert image.review_status == "rejected"
        assert image.review_note == "Logo distorted"
        assert image.reviewed_by == admin_user
        assert image.reviewed_at is not None
        messages = messages_of(response)
        assert "Rejected 1 image." in messages
        assert any(m.startswith("Skipped 1 image:") for m in messages)


class ImageChangePageTests:
    def test_shows_the_large_image_and_its_metadata(
        self, admin_client, campaign, make_image, media
    ):
        image = make_image(campaign, with_file=True, nsfw=False)

        response = admin_client.get(change_url(image))

        assert response.status_code == 200
        html = response.content.decode()
        # Through the permission-checked view, never the storage's URL.
        assert f'<img src="/imagen/original/{image.pk}/"' in html
        assert f'href="/imagen/original/{image.pk}/" target="_blank"' in html
        assert image.file.url not in html
        assert "A red bicycle by the sea" in html
        assert image.sha256 in html
        assert "image/png" in html
        assert "&quot;request_body&quot;" in html  # the reproduction JSON
        assert 'name="_save"' not in html  # read-only: nothing to save

    def test_shows_the_served_files_hash_and_c2pa_flag_read_only(
        self, admin_client, campaign, make_image, media
    ):
        served = "cd" * 32
        image = make_image(campaign, with_file=True, served_sha256=served, provider_c2pa=True)

        html = admin_client.get(change_url(image)).content.decode()

        assert "SHA-256 of the provider&#x27;s file" in html
        assert served in html
        assert "Provider&#x27;s file had C2PA credentials" in html
        assert 'name="served_sha256"' not in html and 'name="provider_c2pa"' not in html

    def test_never_shows_the_callback_token_or_idempotency_key(
        self, admin_client, campaign, make_image, make_task
    ):
        task = make_task(campaign)
        # Even a body that (wrongly) carried the token must not reveal it.
        task.request_body = {
            "prompt": "x",
            "callback_url": f"https://example.com/imagen/webhooks/wave/{task.callback_token}/",
        }
        task.save()
        image = make_image(campaign, task=task)

        html = admin_client.get(change_url(image)).content.decode()

        assert task.callback_token not in html
        assert str(task.idempotency_key) not in html
        assert task.idempotency_key.hex not in html

    def test_review_buttons_for_a_ready_image(self, admin_client, campaign, make_image):
        image = make_image(campaign)
        html = admin_client.get(change_url(image)).content.decode()
        assert f'action="{approve_url(image)}"' in html
        assert f'action="{reject_url(image)}"' in html

    def test_no_review_buttons_while_open(self, admin_client, campaign, make_image):
        image = make_image(campaign, status="processing")
        html = admin_client.get(change_url(image)).content.decode()
        assert approve_url(image) not in html
        assert "Review opens once the image is ready." in html
        assert "data-imagen-autorefresh" in html

    def test_no_review_buttons_without_the_permission(
        self, client, campaign, make_image, staff_user
    ):
        image = make_image(campaign)
        client.force_login(staff_user("view_generatedimage"))
        response = client.get(change_url(image))
        assert response.status_code == 200
        assert approve_url(image) not in response.content.decode()

    def test_images_cannot_be_added_or_edited(self, admin_client, campaign, make_image):
        image = make_image(campaign)
        add = reverse("admin:imagen_assets_generatedimage_add")
        assert admin_client.get(add).status_code == 403
        response = admin_client.post(change_url(image), {"review_status": "approved"})
        assert response.status_code == 403


class ReviewButtonTests:
    def test_approve_records_who_when_and_note(
        self, admin_client, admin_user, campaign, make_image
    ):
        image = make_image(campaign)

        response = admin_client.post(approve_url(image), {"note": "Great light"})

        assert response.status_code == 302
        assert response["Location"] == change_url(image)
        image.refresh_from_db()
        assert image.review_status == "approved"
        assert image.reviewed_by == admin_user
        assert image.reviewed_at is not None
        assert image.review_note == "Great light"
        assert messages_of(response) == [f"Image #{image.pk} approved."]

    def test_reject_records_the_reason(self, admin_client, campaign, make_image):
        image = make_image(campaign)
        admin_client.post(reject_url(image), {"note": "Off-brand colours"})
        image.refresh_from_db()
        assert image.review_status == "rejected"
        assert image.review_note == "Off-brand colours"

    def test_reject_without_a_reason_is_refused(self, admin_client, campaign, make_image):
        image = make_image(campaign)

        response = admin_client.post(reject_url(image), {"note": ""})

        assert response.status_code == 302
        image.refresh_from_db()
        assert image.review_status == "pending"
        assert messages_of(response) == ["Say why the image is rejected."]

    def test_an_unready_image_cannot_be_approved(self, admin_client, campaign, make_image):
        image = make_image(campaign, status="queued")

        response = admin_client.post(approve_url(image), {})

        assert response.status_code == 302
        image.refresh_from_db()
        assert image.review_status == "none"
        assert not image.decisions.exists()
        assert "is not ready" in messages_of(response)[0]

    def test_get_is_not_allowed(self, admin_client, campaign, make_image):
        image = make_image(campaign)
        assert admin_client.get(approve_url(image)).status_code == 405
        assert admin_client.get(reject_url(image)).status_code == 405

    @pytest.mark.parametrize("url", [approve_url, reject_url])
    def test_refused_without_the_permission(self, client, campaign, make_image, staff_user, url):
        image = make_image(campaign)
        client.force_login(staff_user("view_generatedimage"))

        response = client.post(url(image), {"note": "because"})

        assert response.status_code == 403
        image.refresh_from_db()
        assert image.review_status == "pending"

    def test_csrf_is_required(self, admin_user, campaign, make_image):
        from django.test import Client

        image = make_image(campaign)
        client = Client(enforce_csrf_checks=True)
        client.force_login(admin_user)
        assert client.post(approve_url(image), {}).status_code == 403
        image.refresh_from_db()
        assert image.review_status == "pending"

    def test_unknown_image_is_404(self, admin_client):
        url = reverse("admin:imagen_assets_generatedimage_approve", args=[999])
        assert admin_client.post(url, {}).status_code == 404
