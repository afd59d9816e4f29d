"""Notifications delivered for real: a step taken here, the job run by a real RQ worker (the
example site's settings, SMTP from the environment), the message received by an SMTP
server on loopback (aiosmtpd)."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import transaction

from imagen_assets import review
from imagen_assets.activity import Actor
from imagen_assets.models import Campaign, GeneratedImage, GenerationTask
from tests.conftest import wait_for

pytestmark = [pytest.mark.integration]

SITE = "https://marketing.example.com"


class Inbox:
    """What the SMTP server accepted: (envelope recipients, parsed message) per message."""

    def __init__(self) -> None:
        self.received: list[tuple[list[str], EmailMessage]] = []
        self.lock = threading.Lock()

    # aiosmtpd calls its handlers by these names.
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.received.append((list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    def messages(self) -> list[tuple[list[str], EmailMessage]]:
        with self.lock:
            return list(self.received)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    controller_module = pytest.importorskip("aiosmtpd.controller")
    inbox = Inbox()
    port = free_port()
    controller = controller_module.Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture
def mail_worker(
    smtp: tuple[Inbox, int],
    stack_env: dict[str, str],
    start_worker: Callable[..., Any],
    settings: Any,
) -> Inbox:
    """A real worker whose mail goes to the loopback SMTP server; links to SITE."""
    inbox, port = smtp
    env = {
        **stack_env,
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(port),
        "DEFAULT_FROM_EMAIL": "Campaign images <images@example.com>",
        "IMAGEN_SITE_URL": SITE,
    }
    # This process queues the job: the same IMAGEN_ASSETS as the worker's.
    settings.IMAGEN_ASSETS = {**settings.IMAGEN_ASSETS, "SITE_URL": SITE}
    start_worker(env)
    return inbox


def user(name: str, address: str, *codenames: str) -> Any:
    account = get_user_model().objects.create_user(name, email=address)
    account.user_permissions.set(
        Permission.objects.filter(content_type__app_label="imagen_assets", codename__in=codenames)
    )
    return account


def ready_campaign(requester: Any) -> Campaign:
    campaign = Campaign.objects.create(name="Spring launch", slug="spring-launch")
    task = GenerationTask.objects.create(
        campaign=campaign,
        provider="sandbox",
        model="imagen-4.0",
        prompt="A kite over a meadow",
        aspect_ratio="1:1",
        num_images=1,
        status="succeeded",
        requested_by=requester,
    )
    GeneratedImage.objects.create(task=task, campaign=campaign, index=0, status="succeeded")
    return campaign


class DeliveryTests:
    def test_a_submit_reaches_the_reviewers_over_smtp(self, mail_worker: Inbox) -> None:
        requester = user("rita", "rita@example.com", "change_campaign")
        user("alice", "alice@example.com", "approve_generatedimage")
        user("bob", "bob@example.com", "approve_generatedimage")
        user("mute", "", "approve_generatedimage")
        campaign = ready_campaign(requester)

        review.submit(campaign.pk, Actor(user=requester))

        messages = wait_for(
            lambda: len(mail_worker.messages()) == 2 and mail_worker.messages(),
            30,
            "two messages at the SMTP server",
        )
        assert sorted(rcpt for rcpts, _ in messages for rcpt in rcpts) == [
            "alice@example.com",
            "bob@example.com",
        ]
        for rcpts, message in messages:
            assert message["To"] == rcpts[0]  # one message each: nobody sees the others
            assert message["From"] == "Campaign images <images@example.com>"
            assert message["Subject"] == "[Campaign images] Spring launch waits for your review"
            assert message.get_content_type() == "multipart/alternative"
            text = message.get_body(("plain",))
            html = message.get_body(("html",))
            assert text is not None and html is not None
            link = f"{SITE}/admin/imagen_assets/campaign/{campaign.pk}/change/"
            assert "rita submitted Spring launch for review" in text.get_content()
            assert link in text.get_content()
            assert f'<a href="{link}">' in html.get_content()

    def test_a_rolled_back_step_sends_nothing(self, mail_worker: Inbox) -> None:
        requester = user("rita", "rita@example.com", "change_campaign")
        reviewer = user("alice", "alice@example.com", "approve_generatedimage")
        campaign = ready_campaign(requester)
        image = GeneratedImage.objects.get(campaign=campaign)

        with pytest.raises(RuntimeError), transaction.atomic():
            review.comment(image.pk, Actor(user=reviewer), "Never happened.")
            raise RuntimeError("the request failed after the comment")
        # A later step's mail is queued behind anything the rolled-back one could have
        # queued: once it has arrived, the worker would have sent the other first.
        review.comment(image.pk, Actor(user=reviewer), "Crop tighter?")

        wait_for(lambda: mail_worker.messages(), 30, "the committed comment's mail")
        ((rcpts, message),) = mail_worker.messages()
        assert rcpts == ["rita@example.com"]
        text = message.get_body(("plain",))
        assert text is not None
        assert "Crop tighter?" in text.get_content()
        assert "Never happened." not in text.get_content()
