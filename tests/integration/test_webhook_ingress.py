"""Webhooks into the live Django server, backed by PostgreSQL (docs/reliability.md):

- W5: one webhook-id delivered ten times at once and again twice later is one event row and
  one transition, and every delivery is answered 2xx;
- W13: a webhook is answered while another session holds the task's row ``FOR UPDATE``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import django_rq
import httpx
import pytest
from django.db import connection, connections, transaction

from imagen_assets.models import Activity, Campaign, GenerationTask, WebhookEvent
from imagen_assets.providers import GenerationParams, get_provider
from imagen_assets.status import TaskStatus
from tests.conftest import wait_for
from tests.factories import running_wavespeed_task, signed_wavespeed_headers, wait_all_finished
from tests.integration.test_concurrency import (  # noqa: F401 (postgresql_only is autouse)
    at_once,
    postgresql_only,
)

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


@pytest.fixture
def campaign(stack_env: dict[str, str], settings: Any, sandbox: Any) -> Campaign:
    """A campaign; this process (the live server) checks WaveSpeed webhooks with the
    sandbox's secret."""
    settings.IMAGEN_ASSETS["PROVIDERS"]["wavespeed"]["OPTIONS"]["WEBHOOK_SECRET"] = (
        sandbox.webhook_secret
    )
    return Campaign.objects.create(name="Harbour", slug="harbour")


def finished_at_the_sandbox() -> dict[str, Any]:
    """A prediction the sandbox has finished, made without our database (so no job of
    ours knows it), as WaveSpeed's webhook body reports it."""
    with get_provider("wavespeed") as provider:
        submitted = provider.submit(
            GenerationParams(prompt="A harbour at dawn"), idempotency_key="w5", callback_url=None
        )
        state = wait_for(
            lambda: (s := provider.fetch(submitted.task_id)).status == TaskStatus.SUCCEEDED and s,
            15,
            "the sandbox to finish",
        )
    return {
        "id": state.task_id,
        "model": "wavespeed-ai/imagen4",
        "status": "completed",
        "outputs": [output.url for output in state.outputs],
        "has_nsfw_contents": [False] * len(state.outputs),
        "error": "",
    }


class DuplicateDeliveryTests:
    def test_one_webhook_id_is_one_event_and_one_transition_however_often_it_comes(
        self, campaign: Campaign, sandbox: Any, live_server: Any, worker: Any
    ) -> None:
        prediction = finished_at_the_sandbox()
        task = running_wavespeed_task(campaign, prediction["id"])
        body = json.dumps(prediction).encode()
        url = f"{live_server.url}/imagen/webhooks/wavespeed/"

        def deliver() -> httpx.Response:
            # Signed afresh each time, as a redelivery is.
            headers = signed_wavespeed_headers(sandbox.webhook_secret, "evt-w5", body)
            return httpx.post(url, content=body, headers=headers, timeout=30)

        at_once_answers = at_once([deliver] * 10)
        [image] = wait_all_finished([task])
        later_answers = [deliver(), deliver()]

        answers = [*at_once_answers, *later_answers]
        assert all(isinstance(a, httpx.Response) for a in answers), answers
        assert [a.status_code for a in answers] == [200] * 12
        assert [a.json() for a in answers].count({"ok": True}) == 1
        assert [a.json() for a in answers].count({"ok": True, "duplicate": True}) == 11
        event = WebhookEvent.objects.get()
        assert (event.event_id, event.task_id) == ("evt-w5", task.pk)
        assert event.outcome == "applied succeeded; stored 1, withheld 0"
        task.refresh_from_db()
        assert task.status == TaskStatus.SUCCEEDED
        assert image.status == "succeeded"
        # One transition: the image became ready once, and nothing is left to run.
        ready = Activity.objects.filter(image=image, verb=Activity.Verb.READY)
        assert ready.count() == 1
        queue = django_rq.get_queue("default")
        started = [queue.fetch_job(i) for i in queue.started_job_registry.get_job_ids()]
        left = [job.func_name for job in [*queue.get_jobs(), *started] if job is not None]
        # The worker's reconciler may be due at any moment; nothing else may be left.
        assert [name for name in left if name != "imagen_assets.jobs.reconcile"] == []


@pytest.fixture
def task_row_locked() -> Iterator[Callable[[int], threading.Event]]:
    """``lock(task_id)``: hold ``SELECT ... FOR UPDATE`` on that task's row in another
    connection until the event it returns is set (or the test ends)."""
    release = threading.Event()
    threads: list[threading.Thread] = []

    def lock(task_id: int) -> threading.Event:
        locked = threading.Event()

        def hold() -> None:
            try:
                with transaction.atomic():
                    GenerationTask.objects.select_for_update().get(pk=task_id)
                    locked.set()
                    release.wait(120)
            finally:
                connections.close_all()

        thread = threading.Thread(target=hold, daemon=True)
        thread.start()
        threads.append(thread)
        assert locked.wait(30), "the lock was not taken"
        return release

    yield lock
    release.set()
    for thread in threads:
        thread.join(30)


def sessions_waiting_on_a_lock() -> list[str]:
    """The statements of this database's sessions that wait for a lock right now."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT query FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return [row[0] for row in cursor.fetchall()]


def answered_or_blocked(future: Future[httpx.Response]) -> list[str]:
    """Wait until the webhook is answered (returns []) or a session is seen waiting for a
    lock (returns its statements): no timing bound, each outcome is observed."""
    while not future.done():
        waiting = sessions_waiting_on_a_lock()
        if waiting:
            return waiting
        time.sleep(0.02)
    return []


class RowLockTests:
    @pytest.mark.parametrize("alias", ["wave", "wavespeed"])
    def test_a_webhook_is_answered_while_another_session_holds_the_task_row(
        self,
        campaign: Campaign,
        sandbox: Any,
        live_server: Any,
        task_row_locked: Any,
        alias: str,
    ) -> None:
        task = running_wavespeed_task(
            campaign, f"locked-{alias}", provider=alias, model="m", status="processing"
        )
        if alias == "wave":
            url = f"{live_server.url}/imagen/webhooks/wave/{task.callback_token}/"
            body = json.dumps({"task_id": task.provider_task_id, "status": "completed"}).encode()
            headers = {"content-type": "application/json"}
        else:
            url = f"{live_server.url}/imagen/webhooks/wavespeed/"
            body = json.dumps(
                {"id": task.provider_task_id, "status": "processing", "outputs": []}
            ).encode()
            headers = signed_wavespeed_headers(sandbox.webhook_secret, f"evt-{alias}", body)
        release = task_row_locked(task.pk)

        with ThreadPoolExecutor(1) as pool:
            future = pool.submit(httpx.post, url, content=body, headers=headers, timeout=120)
            try:
                blocked = answered_or_blocked(future)
                answered_while_locked = future.done() and not release.is_set()
            finally:
                release.set()  # a blocked webhook then finishes, and the test can report
            response = future.result()

        assert blocked == [], f"the webhook waited for a lock: {blocked}"
        assert answered_while_locked
        assert response.status_code == 200
        assert response.json() == {"ok": True}
        event = WebhookEvent.objects.get()
        assert (event.provider, event.task_id) == (alias, task.pk)
