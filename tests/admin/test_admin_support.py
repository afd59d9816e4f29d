"""The support views: generation tasks and webhook events, read-only."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from imagen_assets.models import WebhookEvent

pytestmark = pytest.mark.django_db


class GenerationTaskAdminTests:
    def test_list_renders_without_secrets(self, admin_client, campaign, make_task):
        task = make_task(
            campaign,
            status="failed",
            provider_task_id="wave-123",
            estimated_cost=Decimal("0.0425"),
            error_message="Wave: HTTP 402 [insufficient_quota]: top up your account",
        )

        response = admin_client.get(reverse("admin:imagen_assets_generationtask_changelist"))

        assert response.status_code == 200
        html = response.content.decode()
        assert "wave-123" in html
        assert "$0.04" in html and "$0.0425" not in html  # two decimals, as everywhere
        assert "Wave: HTTP 402 [insufficient_quota]" in html
        assert task.callback_token not in html
        assert str(task.idempotency_key) not in html

    def test_change_page_shows_request_and_outputs_but_no_secrets(
        self, admin_client, campaign, make_task
    ):
        task = make_task(campaign, outputs=["https://cdn.example.com/out-1.png"])
        # Even a body that (wrongly) carried the token must not reveal it.
        task.request_body = {
            "prompt": "Bicycle",
            "callback_url": f"https://x/{task.callback_token}/",
        }
        task.save()

        response = admin_client.get(
            reverse("admin:imagen_assets_generationtask_change", args=[task.pk])
        )

        assert response.status_code == 200
        html = response.content.decode()
        assert "&quot;prompt&quot;: &quot;Bicycle&quot;" in html
        assert "https://cdn.example.com/out-1.png" in html
        assert task.callback_token not in html
        assert str(task.idempotency_key) not in html
        assert "callback token" not in html.lower()
        assert "idempotency" not in html.lower()
        assert 'name="_save"' not in html

    def test_read_only_and_only_superusers_delete(self, client, campaign, make_task, staff_user):
        task = make_task(campaign)
        client.force_login(
            staff_user("view_generationtask", "change_generationtask", "delete_generationtask")
        )
        change = reverse("admin:imagen_assets_generationtask_change", args=[task.pk])
        assert client.get(change).status_code == 200
        assert client.post(change, {"status": "failed"}).status_code == 403
        delete = reverse("admin:imagen_assets_generationtask_delete", args=[task.pk])
        assert client.get(delete).status_code == 403
        add = reverse("admin:imagen_assets_generationtask_add")
        assert client.get(add).status_code == 403

    def test_superuser_may_delete(self, admin_client, campaign, make_task):
        task = make_task(campaign)
        delete = reverse("admin:imagen_assets_generationtask_delete", args=[task.pk])
        assert admin_client.get(delete).status_code == 200


class WebhookEventAdminTests:
    def test_list_and_page_render(self, admin_client, campaign, make_task):
        task = make_task(campaign, provider_task_id="pred-9")
        event = WebhookEvent.objects.create(
            provider="wavespeed",
            event_id="evt-1",
            provider_task_id="pred-9",
            task=task,
            payload={"id": "pred-9", "status": "completed"},
            outcome="completed",
        )

        listing = admin_client.get(reverse("admin:imagen_assets_webhookevent_changelist"))
        assert listing.status_code == 200
        html = listing.content.decode()
        assert "evt-1" in html and "pred-9" in html and "completed" in html
        assert reverse("admin:imagen_assets_generationtask_change", args=[task.pk]) in html

        page = admin_client.get(reverse("admin:imagen_assets_webhookevent_change", args=[event.pk]))
        assert page.status_code == 200
        assert "&quot;status&quot;: &quot;completed&quot;" in page.content.decode()

    def test_an_event_whose_task_row_is_gone_still_renders(self, admin_client):
        """W13: the task column has no database constraint, so its id may name no row."""
        event = WebhookEvent.objects.create(
            provider="wave", event_id="evt-gone", provider_task_id="t-1", task_id=987_654
        )

        listing = admin_client.get(reverse("admin:imagen_assets_webhookevent_changelist"))
        page = admin_client.get(reverse("admin:imagen_assets_webhookevent_change", args=[event.pk]))

        assert (listing.status_code, page.status_code) == (200, 200)
        assert "evt-gone" in page.content.decode()

    def test_cannot_be_added(self, admin_client):
        add = reverse("admin:imagen_assets_webhookevent_add")
        assert admin_client.get(add).status_code == 403
