"""The same work done at once from several threads, each with its own database connection,
against PostgreSQL (``select_for_update`` does nothing on SQLite): exactly one provider
submit, one stored file per image, one budget winner, one webhook event."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import django_rq
import httpx
import pytest
from django.db import connection, connections

from campaigns.settings import imagen_files_root
from imagen_assets import jobs, services
from imagen_assets.jobs import Did, Outcome
from imagen_assets.models import Campaign, GeneratedImage, GenerationTask, WebhookEvent
from imagen_assets.status import TaskStatus
from tests.factories import (
    running_wavespeed_task,
    signed_wavespeed_headers,
    submitted_and_finished_at_provider,
)

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


@pytest.fixture(autouse=True)
def postgresql_only(stack_env: dict[str, str]) -> None:
    if connection.vendor != "postgresql":
        pytest.skip(
            f"row locks need PostgreSQL, the database is {connection.vendor}: "
            "run `make test-postgres`"
        )


@pytest.fixture
def campaign(stack_env: dict[str, str]) -> Campaign:
    return Campaign.objects.create(name="Winter", slug="winter")


def at_once(calls: Sequence[Callable[[], Any]]) -> list[Any]:
    """Run every call in its own thread, released together; each result or the exception
    it raised, in order. Each thread closes its database connections when done."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        try:
            barrier.wait(10)
            return call()
        except Exception as exc:
            return exc
        finally:
            connections.close_all()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def media_files(env: dict[str, str]) -> list[Path]:
    root = Path(imagen_files_root(env))
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


class ConcurrentJobTests:
    def test_concurrent_submits_reach_the_provider_once(
        self, campaign: Campaign, sandbox: Any
    ) -> None:
        sandbox.config.drop_callbacks = True  # webhooks are not what this is about
        # 12 images = 3 tasks; no worker runs, so only these calls submit.
        tasks = services.request_images(campaign=campaign, prompt="Snowy roofs", count=12)
        assert len(tasks) == 3
        before = sandbox.stats["wavespeed_submits"]
        calls = [lambda pk=task.pk: jobs.submit(pk) for task in tasks for _ in range(4)]
        outcomes = at_once(calls)

        assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
        assert sandbox.stats["wavespeed_submits"] - before == 3
        for position, task in enumerate(tasks):
            mine = outcomes[position * 4 : position * 4 + 4]
            assert sum(o.did is Did.SUBMITTED for o in mine) == 1, mine
            task.refresh_from_db()
            assert task.status == TaskStatus.SUBMITTED
            assert [o for o in mine if o.did is Did.SUBMITTED] == [
                Outcome(Did.SUBMITTED, detail=task.provider_task_id)
            ]
            assert task.attempts == 1
            assert task.submit_lease_until is None
        assert len({t.provider_task_id for t in GenerationTask.objects.all()}) == 3

    def test_concurrent_completions_store_each_image_once(
        self, campaign: Campaign, sandbox: Any, settings: Any, stack_env: dict[str, str]
    ) -> None:
        settings.IMAGEN_ASSETS["WEBHOOK_BASE_URL"] = None  # only these calls complete it
        [task] = services.request_images(campaign=campaign, prompt="Ice skaters", count=4)
        submitted_and_finished_at_provider(task)
        downloads = sandbox.stats["downloads"]

        outcomes = at_once([lambda: jobs.complete(task.pk)] * 4)

        assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
        stored = sum(o.stored for o in outcomes if o.did is Did.STORED)
        assert stored == 4, outcomes
        images = list(GeneratedImage.objects.filter(task=task))
        assert {i.status for i in images} == {GeneratedImage.Status.SUCCEEDED}
        assert len({i.sha256 for i in images}) == 4
        files = media_files(stack_env)
        originals = [p for p in files if p.parent.name != "thumbs"]
        thumbs = [p for p in files if p.parent.name == "thumbs"]
        assert len(originals) == len(thumbs) == 4, files
        root = Path(imagen_files_root(stack_env))
        assert sorted(str(p.relative_to(root)) for p in originals) == sorted(
            i.file.name for i in images
        )
        assert sorted(str(p.relative_to(root)) for p in thumbs) == sorted(
            i.thumbnail.name for i in images
        )
        assert sandbox.stats["downloads"] - downloads >= 4


class BudgetRaceTests:
    def test_only_one_of_two_concurrent_requests_fits_the_budget(
        self, stack_env: dict[str, str]
    ) -> None:
        # wavespeed costs $0.04 an image: two images fit a $0.10 budget once, not twice.
        for round_ in range(3):
            campaign = Campaign.objects.create(
                name=f"Tight {round_}", slug=f"tight-{round_}", budget=Decimal("0.10")
            )
            outcomes = at_once(
                [
                    lambda c=campaign: services.request_images(
                        campaign=c, prompt="Frost", count=2, provider="wavespeed"
                    )
                ]
                * 2
            )
            winners = [o for o in outcomes if isinstance(o, list)]
            losers = [o for o in outcomes if isinstance(o, services.BudgetExceeded)]
            assert len(winners) == 1 and len(losers) == 1, outcomes
            assert "$0.02" in str(losers[0])  # what was left after the winner's reservation
            assert GenerationTask.objects.filter(campaign=campaign).count() == 1
            assert GeneratedImage.objects.filter(campaign=campaign).count() == 2
            assert campaign.committed_spend() == Decimal("0.08")


class DuplicateWebhookTests:
    def test_ten_concurrent_deliveries_make_one_event(
        self, campaign: Campaign, sandbox: Any, live_server: Any, settings: Any, redis_conn: Any
    ) -> None:
        settings.IMAGEN_ASSETS["PROVIDERS"]["wavespeed"]["OPTIONS"]["WEBHOOK_SECRET"] = (
            sandbox.webhook_secret
        )
        task = running_wavespeed_task(campaign, "dup-123")
        body = json.dumps(
            {
                "id": "dup-123",
                "status": "completed",
                "outputs": [f"{sandbox.url}/files/x.jpg"],
                "has_nsfw_contents": [False],
                "error": "",
                "model": "wavespeed-ai/imagen4",
            }
        ).encode()
        headers = signed_wavespeed_headers(sandbox.webhook_secret, "evt-duplicate-1", body)
        url = f"{live_server.url}/imagen/webhooks/wavespeed/"

        def deliver() -> httpx.Response:
            return httpx.post(url, content=body, headers=headers, timeout=20)

        responses = at_once([deliver] * 10)

        assert all(isinstance(r, httpx.Response) for r in responses), responses
        assert sorted(r.status_code for r in responses) == [200] * 10
        assert sum(not r.json().get("duplicate") for r in responses) == 1
        assert WebhookEvent.objects.count() == 1
        event = WebhookEvent.objects.get()
        assert (event.provider, event.event_id, event.provider_task_id) == (
            "wavespeed",
            "evt-duplicate-1",
            "dup-123",
        )
        assert event.state is not None and event.state["status"] == TaskStatus.SUCCEEDED
        # One delivery was recorded, so one job was queued to act on it.
        queue = django_rq.get_queue("default")
        queued = [job for job in queue.get_jobs() if job.func_name.endswith("process_webhook")]
        assert [job.args for job in queued] == [(event.pk,)]
        task.refresh_from_db()
        assert task.status == "processing"  # the view itself changes nothing


class ConcurrentReviewTests:
    """Reviewers deciding at the same moment, each in their own session."""

    @pytest.fixture
    def reviewers(self) -> list[Any]:
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Permission

        perms = Permission.objects.filter(
            content_type__app_label="imagen_assets",
            codename__in=["approve_generatedimage", "reject_generatedimage"],
        )
        users = []
        for name in ("ann", "bob", "cid"):
            user = get_user_model().objects.create_user(name)
            user.user_permissions.set(perms)
            users.append(user)
        return users

    def ready_image(self, campaign: Campaign) -> GeneratedImage:
        task = GenerationTask.objects.create(
            campaign=campaign,
            provider="sandbox",
            model="m",
            prompt="p",
            aspect_ratio="1:1",
            num_images=1,
            status=TaskStatus.SUCCEEDED,
        )
        return GeneratedImage.objects.create(
            task=task, campaign=campaign, index=0, status="succeeded"
        )

    def decide(self, image: GeneratedImage, user: Any, decision: str = "approve") -> Any:
        from imagen_assets import review
        from imagen_assets.activity import Actor

        return lambda: review.decide(image.pk, decision, Actor.of(user), note="n")

    def test_both_are_recorded_while_both_are_needed(
        self, campaign: Campaign, reviewers: list[Any]
    ) -> None:
        campaign.required_approvals = 2
        campaign.save()
        image = self.ready_image(campaign)

        outcomes = at_once([self.decide(image, reviewers[0]), self.decide(image, reviewers[1])])

        assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
        image.refresh_from_db()
        assert image.review_status == "approved"
        assert sorted(image.decisions.values_list("reviewer_label", flat=True)) == ["ann", "bob"]

    def test_a_decision_arriving_after_the_image_was_decided_is_refused(
        self, campaign: Campaign, reviewers: list[Any]
    ) -> None:
        from imagen_assets.review import ReviewError

        image = self.ready_image(campaign)

        outcomes = at_once(
            [
                self.decide(image, reviewers[0], "approve"),
                self.decide(image, reviewers[1], "reject"),
                self.decide(image, reviewers[2], "approve"),
            ]
        )

        refused = [o for o in outcomes if isinstance(o, ReviewError)]
        assert len(refused) == 2, outcomes
        assert all("already" in str(o) for o in refused)
        assert not [o for o in outcomes if isinstance(o, Exception) and o not in refused]
        image.refresh_from_db()
        (decision,) = image.decisions.all()
        assert (
            image.review_status == {"approve": "approved", "reject": "rejected"}[decision.decision]
        )

    def test_the_same_reviewer_twice_at_once_counts_once(
        self, campaign: Campaign, reviewers: list[Any]
    ) -> None:
        campaign.required_approvals = 2
        campaign.save()
        image = self.ready_image(campaign)

        outcomes = at_once([self.decide(image, reviewers[0])] * 3)

        image.refresh_from_db()
        assert image.decisions.count() == 1
        assert image.review_status == "pending"
        assert sum(isinstance(o, Exception) for o in outcomes) == 2, outcomes
