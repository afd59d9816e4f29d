"""Calls to the provider with real parts (docs/reliability.md P1, P6, P8, P9, Q2, Q13).

A real loopback port with nothing listening; the sandbox provider over HTTP, stuck in
``processing`` or finishing while RQ says the job failed; a real process that exits between
the provider's answer and saving its task id; a loopback fake provider answering whatever
Hypothesis makes up. The API key is checked against every log line these runs write (P9).
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import django_rq
import pytest
from django.core.cache import cache
from django.utils import timezone
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rq.job import Job, JobStatus

from campaigns.settings import imagen_files_root
from imagen_assets import downloads, jobs, services
from imagen_assets.jobs import Did, Why
from imagen_assets.models import Campaign, GeneratedImage, GenerationTask, ProviderHealth
from imagen_assets.providers import get_provider
from imagen_assets.status import TaskStatus
from tests.conftest import wait_for
from tests.factories import running_wavespeed_task, wait_all_finished
from tests.loopback import LoopbackServer

pytestmark = [pytest.mark.integration]

API_KEY = "wavespeed-test-key"  # what stack_env gives the example site


@pytest.fixture
def campaign(stack_env: dict[str, str]) -> Campaign:
    return Campaign.objects.create(name="Provider faults", slug="provider-faults")


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every log record of the run; after the test, none may hold the API key (P9)."""
    caplog.set_level(logging.DEBUG)
    yield caplog
    assert API_KEY not in caplog.text


def expire_the_lease(task: GenerationTask) -> None:
    """What time does for a claim: the lease of the last attempt has run out."""
    GenerationTask.objects.filter(pk=task.pk).update(
        submit_lease_until=timezone.now() - timedelta(seconds=1)
    )


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scheduled(func_name: str) -> list[tuple[tuple[Any, ...], float]]:
    """(arguments, seconds from now) of each scheduled RQ job calling ``func_name``."""
    queue = django_rq.get_queue("default")
    registry = queue.scheduled_job_registry
    now = timezone.now()
    found = []
    for job_id in registry.get_job_ids():
        job = queue.fetch_job(job_id)
        if job is not None and job.func_name == func_name:
            due = registry.get_scheduled_time(job_id)
            found.append((tuple(job.args), (due - now).total_seconds()))
    return found


# -- P1: connection refused ------------------------------------------------------------------


class ConnectionRefusedTests:
    def test_submit_to_a_port_with_no_listener_is_retried_with_backoff_then_failed(
        self, campaign: Campaign, settings: Any, redis_conn: Any, logs: Any
    ) -> None:
        """P1. The request never left, so each attempt is retried after a full-jitter
        delay (at most 2, 4, ... s), up to SUBMIT_MAX_ATTEMPTS; then the task fails with a
        message that says what happened, and without the API key."""
        port = closed_port()
        settings.IMAGEN_ASSETS["PROVIDERS"]["wavespeed"]["OPTIONS"]["BASE_URL"] = (
            f"http://127.0.0.1:{port}"
        )
        settings.IMAGEN_ASSETS["SUBMIT_MAX_ATTEMPTS"] = 3
        [task] = services.request_images(campaign=campaign, prompt="Refused", provider="wavespeed")
        redis_conn.flushdb()  # the submit queued after commit: these calls stand in for it

        for attempt in (1, 2):
            outcome = jobs.submit(task.pk)
            assert outcome.did is Did.RETRYING, outcome
            assert outcome.delay is not None and 1.0 <= outcome.delay <= 2.0 * 2 ** (attempt - 1)
            [(args, due_in)] = scheduled("imagen_assets.jobs.submit")
            assert args == (task.pk,) and due_in <= outcome.delay
            task.refresh_from_db()
            assert (task.status, task.attempts, task.provider_task_id) == ("queued", attempt, "")
            assert task.submit_started_at is None  # nothing was sent: safe to send again
            assert f"attempt {attempt} of 3" in task.error_message
            redis_conn.flushdb()
            expire_the_lease(task)

        assert jobs.submit(task.pk).did is Did.FAILED
        task.refresh_from_db()
        assert task.status == TaskStatus.FAILED
        assert task.attempts == 3
        assert "WaveSpeed" in task.error_message
        assert "connect" in task.error_message.lower()
        assert API_KEY not in task.error_message
        assert scheduled("imagen_assets.jobs.submit") == []

    def test_a_read_from_a_port_with_no_listener_is_tried_again_later(
        self, campaign: Campaign, settings: Any, redis_conn: Any, logs: Any
    ) -> None:
        """P1 on a poll: the task stays open and the next read is scheduled."""
        settings.IMAGEN_ASSETS["PROVIDERS"]["wavespeed"]["OPTIONS"]["BASE_URL"] = (
            f"http://127.0.0.1:{closed_port()}"
        )
        task = running_wavespeed_task(campaign, "p1-read")

        outcome = jobs.poll(task.pk)

        assert outcome.did is Did.READ_FAILED, outcome
        task.refresh_from_db()
        assert task.status == TaskStatus.PROCESSING
        assert [args for args, _ in scheduled("imagen_assets.jobs.poll")] == [(task.pk,)]


# -- P8: a task that never finishes ----------------------------------------------------------


class StuckTaskTests:
    def test_a_task_stuck_in_processing_fails_at_its_deadline(
        self, campaign: Campaign, sandbox: Any, settings: Any, redis_conn: Any, logs: Any
    ) -> None:
        """P8. The sandbox keeps the task running for an hour and never calls back; the
        poll that runs after TASK_TIMEOUT fails it without asking the provider again."""
        sandbox.config.latency = 3600
        sandbox.config.drop_callbacks = True
        settings.IMAGEN_ASSETS["WEBHOOK_BASE_URL"] = None
        [task] = services.request_images(campaign=campaign, prompt="Forever")
        redis_conn.flushdb()
        assert jobs.submit(task.pk).did is Did.SUBMITTED
        polls = sandbox.stats["wavespeed_polls"]

        GenerationTask.objects.filter(pk=task.pk).update(next_poll_at=None)
        assert jobs.poll(task.pk).did is Did.READ
        task.refresh_from_db()
        assert task.status in (TaskStatus.SUBMITTED, TaskStatus.PROCESSING)
        assert sandbox.stats["wavespeed_polls"] == polls + 1

        settings.IMAGEN_ASSETS["TASK_TIMEOUT"] = 1
        wait_for(
            lambda: timezone.now() - task.submitted_at > timedelta(seconds=1.2),
            5,
            "the deadline to pass",
        )
        GenerationTask.objects.filter(pk=task.pk).update(next_poll_at=None)
        assert jobs.poll(task.pk).why is Why.TIMEOUT
        task.refresh_from_db()
        assert task.status == TaskStatus.FAILED
        assert "did not finish within" in task.error_message
        assert sandbox.stats["wavespeed_polls"] == polls + 1  # failed without asking
        assert {i.status for i in GeneratedImage.objects.filter(task=task)} == {"failed"}
        settings.IMAGEN_ASSETS["RECONCILE_AFTER"] = 0
        assert jobs.reconcile() == {
            "submit": 0,
            "poll": 0,
            "complete": 0,
            "webhook": 0,
            "sweep": 0,
        }


# -- Q13: RQ says failed, the provider says succeeded ----------------------------------------


class FalseFailureTests:
    def test_the_reconciler_finishes_a_task_whose_rq_job_was_marked_failed(
        self,
        campaign: Campaign,
        sandbox: Any,
        settings: Any,
        stack_env: dict[str, str],
        redis_conn: Any,
        start_worker: Any,
        logs: Any,
    ) -> None:
        """Q13. The scheduled poll is moved to RQ's failed registry by hand (as an rq#2061
        false failure leaves it) while the sandbox finishes the task. The reconciler goes by
        the database and the provider, not by RQ: the image is stored, once, with one submit."""
        sandbox.config.latency = 0.3
        sandbox.config.drop_callbacks = True
        settings.IMAGEN_ASSETS["WEBHOOK_BASE_URL"] = None
        submits = sandbox.stats["wavespeed_submits"]
        [task] = services.request_images(campaign=campaign, prompt="False alarm")
        redis_conn.flushdb()
        assert jobs.submit(task.pk).did is Did.SUBMITTED
        queue = django_rq.get_queue("default")
        [poll_id] = queue.scheduled_job_registry.get_job_ids()
        job = Job.fetch(poll_id, connection=queue.connection)
        queue.scheduled_job_registry.remove(job)
        job.set_status(JobStatus.FAILED)
        queue.failed_job_registry.add(job, exc_string="rq.exceptions.AbandonedJobError")
        task.refresh_from_db()
        with get_provider(task.provider) as provider:
            wait_for(
                lambda: provider.fetch(task.provider_task_id).status == TaskStatus.SUCCEEDED,
                15,
                "the sandbox to finish",
            )
        start_worker()
        settings.IMAGEN_ASSETS["RECONCILE_AFTER"] = 0
        # The read the failed job stood for was due 2 s after the submit.
        wait_for(lambda: jobs.reconcile()["poll"] == 1, 10, "the reconciler to queue a read")

        [image] = wait_all_finished([task], timeout=30)
        assert image.status == GeneratedImage.Status.SUCCEEDED, image.error_message
        assert sandbox.stats["wavespeed_submits"] - submits == 1
        assert queue.failed_job_registry.get_job_ids() == [poll_id]  # RQ still says failed
        root = Path(imagen_files_root(stack_env))
        assert len([p for p in root.rglob("*") if p.is_file() and p.parent.name != "thumbs"]) == 1


# -- Q2: a crash between "provider accepted" and "task id saved" -----------------------------

CRASH_AFTER_THE_PROVIDER_ANSWERED = """
import os, sys
import django
django.setup()
from imagen_assets import jobs, lifecycle
def crash(*args, **kwargs):
    os._exit(86)  # the provider has answered; its task id is not saved
lifecycle.record_submitted = crash
jobs.submit(int(sys.argv[1]))
sys.exit(0)
"""


def submit_and_crash(task: GenerationTask, env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-c", CRASH_AFTER_THE_PROVIDER_ANSWERED, str(task.pk)],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 86, result.stderr.decode()[-2000:]


class CrashBeforeSavingTests:
    def test_without_idempotency_the_task_fails_saying_so_and_is_not_submitted_again(
        self,
        campaign: Campaign,
        sandbox: Any,
        settings: Any,
        stack_env: dict[str, str],
        redis_conn: Any,
        logs: Any,
    ) -> None:
        """Q2, WaveSpeed (the sandbox alias): the process dies after the provider created
        the prediction. The next attempt finds the marked, unanswered attempt and fails the
        task with a reason, instead of paying twice; the row is not stuck."""
        sandbox.config.drop_callbacks = True
        submits = sandbox.stats["wavespeed_submits"]
        [task] = services.request_images(campaign=campaign, prompt="Crash")
        redis_conn.flushdb()

        submit_and_crash(task, stack_env)

        task.refresh_from_db()
        assert (task.status, task.provider_task_id) == (TaskStatus.QUEUED, "")
        assert task.submit_started_at is not None
        assert sandbox.stats["wavespeed_submits"] - submits == 1
        expire_the_lease(task)
        assert jobs.submit(task.pk) == jobs.Outcome(Did.FAILED, Why.INTERRUPTED)
        task.refresh_from_db()
        assert task.status == TaskStatus.FAILED
        assert "may or may not have reached the provider" in task.error_message
        assert sandbox.stats["wavespeed_submits"] - submits == 1
        settings.IMAGEN_ASSETS["RECONCILE_AFTER"] = 0
        assert jobs.reconcile()["submit"] == 0

    def test_with_an_idempotency_key_the_same_task_is_found_again(
        self,
        campaign: Campaign,
        sandbox: Any,
        stack_env: dict[str, str],
        redis_conn: Any,
        logs: Any,
    ) -> None:
        """Q2, Wave: the retry sends the same Idempotency-Key, the provider answers with the
        task the dead process created, and no second task exists."""
        sandbox.config.drop_callbacks = True
        sandbox.config.latency = 0.3
        submits = sandbox.stats["wave_submits"]
        [task] = services.request_images(campaign=campaign, prompt="Crash", provider="wave")
        redis_conn.flushdb()

        submit_and_crash(task, stack_env)

        assert sandbox.stats["wave_submits"] - submits == 1
        expire_the_lease(task)
        assert jobs.submit(task.pk).did is Did.SUBMITTED
        task.refresh_from_db()
        assert task.provider_task_id
        assert sandbox.stats["wave_submits"] - submits == 1
        time.sleep(0.5)  # the sandbox's latency
        GenerationTask.objects.filter(pk=task.pk).update(next_poll_at=None)
        jobs.poll(task.pk)
        [image] = wait_all_finished([task], timeout=10)
        assert image.status == GeneratedImage.Status.SUCCEEDED, image.error_message


# -- P6: whatever the provider answers -------------------------------------------------------


class ScriptedProvider(LoopbackServer):
    """A loopback "WaveSpeed" whose result endpoint answers what the test last set."""

    def __init__(self) -> None:
        self.answer: tuple[int, bytes] = (200, b"{}")
        super().__init__(lambda path: (self.answer[0], "application/json", self.answer[1]))


@pytest.fixture
def scripted() -> Iterator[ScriptedProvider]:
    server = ScriptedProvider()
    yield server
    server.close()


SAME_ID = "<the task's id>"
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
output_urls = st.sampled_from(
    [
        "http://127.0.0.1:9/out.png",
        "ftp://127.0.0.1/out.png",
        "",
        "not a url",
        "http://cdn.p6.test/x",
    ]
)
prediction = st.fixed_dictionaries(
    {
        "id": st.one_of(st.just(SAME_ID), st.just(SAME_ID), st.just(SAME_ID), json_values),
        "status": st.one_of(
            st.sampled_from(["created", "processing", "completed", "failed", "canceled"]),
            json_values,
        ),
    },
    optional={
        "outputs": st.one_of(
            st.lists(st.one_of(output_urls, json_values), max_size=4), json_values
        ),
        "has_nsfw_contents": json_values,
        "error": json_values,
        "code": json_values,
    },
)


def envelope(data: Any) -> dict[str, Any]:
    return {"code": 200, "message": "success", "data": data}


answers = st.tuples(
    st.sampled_from([200, 200, 200, 200, 404, 500]),
    st.one_of(
        prediction.map(envelope),
        prediction.map(envelope),
        prediction,
        json_values,
        st.binary(max_size=40),
    ),
)


def _with_id(value: Any, task_id: str) -> Any:
    if value == SAME_ID:
        return task_id
    if isinstance(value, dict):
        return {key: _with_id(item, task_id) for key, item in value.items()}
    return value


def said_it_failed(value: Any, task: GenerationTask) -> bool:
    """The answer reports a failure: an error envelope, or a failed prediction of ours."""
    if not isinstance(value, dict):
        return False
    code = value.get("code")
    if code is not None and str(code) != "200":
        return True
    data = value.get("data")
    return (
        isinstance(data, dict)
        and data.get("id") == task.provider_task_id
        and data.get("status") in ("failed", "timeout")
    )


class UnexpectedAnswerTests:
    def test_any_answer_leaves_the_task_open_or_failed_with_a_reason_and_never_crashes(
        self,
        campaign: Campaign,
        settings: Any,
        scripted: ScriptedProvider,
        monkeypatch: pytest.MonkeyPatch,
        logs: Any,
    ) -> None:
        """P6. Hypothesis makes up the provider's answers to a status read (malformed
        JSON, missing fields, unknown statuses, wrong types, error codes); one task per
        answer. ``poll`` never raises; the task is still open (to be read again) or has
        ended with a reason; an image is never stored from an answer that is not a
        completed prediction with usable URLs. An answer that cannot be read leaves the
        task open until it has come ``UNEXPECTED_READS`` times in a row, then fails it as
        an unexpected provider response; a task fails on the first read only when the
        answer reports a failure."""
        settings.IMAGEN_ASSETS["PROVIDERS"]["wavespeed"]["OPTIONS"]["BASE_URL"] = scripted.url
        # Output URLs here are made up: no real DNS lookups for them.
        real = socket.getaddrinfo

        def loopback_only(host: str, *args: Any, **kwargs: Any) -> Any:
            if host != "127.0.0.1":
                raise socket.gaierror(f"{host}: no such host in this test")
            return real(host, *args, **kwargs)

        monkeypatch.setattr(downloads.socket, "getaddrinfo", loopback_only)
        count = iter(range(10_000))

        @hypothesis_settings(
            max_examples=150,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(answer=answers)
        @example(answer=(200, envelope({"id": SAME_ID, "status": "completed", "outputs": "x"})))
        @example(answer=(200, envelope({"id": SAME_ID, "status": "completed", "outputs": [1, ""]})))
        @example(answer=(200, envelope({"id": SAME_ID, "status": "completed", "outputs": {}})))
        @example(answer=(200, envelope({"id": SAME_ID, "status": "succeeded", "outputs": []})))
        @example(answer=(200, b"<html>gateway</html>"))
        def check(answer: tuple[int, Any]) -> None:
            status, value = answer
            # Each answer is its own story: 500s of earlier examples do not open the breaker.
            ProviderHealth.objects.all().delete()
            task = running_wavespeed_task(campaign, f"p6-{next(count)}")
            body = (
                value
                if isinstance(value, bytes)
                else json.dumps(_with_id(value, task.provider_task_id)).encode()
            )
            scripted.answer = (status, body)

            outcome = jobs.poll(task.pk, reschedule=False)

            task.refresh_from_db()
            assert outcome.did in (Did.READ, Did.READ_FAILED, Did.FAILED, Did.STORED), outcome
            if task.is_terminal:
                assert task.status in (
                    TaskStatus.SUCCEEDED,
                    TaskStatus.FAILED,
                    TaskStatus.CANCELLED,
                )
            if task.status in (TaskStatus.FAILED, TaskStatus.CANCELLED):
                assert task.error_message.strip()
            if task.status == TaskStatus.SUCCEEDED:
                # Only a completed prediction whose outputs are all URLs may count as done.
                data = value.get("data", value) if isinstance(value, dict) else None
                outputs = data.get("outputs") if isinstance(data, dict) else None
                assert outputs is None or (
                    isinstance(outputs, list) and all(isinstance(u, str) and u for u in outputs)
                ), outputs
            for image in GeneratedImage.objects.filter(task=task):
                assert image.status != GeneratedImage.Status.SUCCEEDED  # no URL here serves one
                if image.status == GeneratedImage.Status.FAILED:
                    assert image.error_message.strip()
            if outcome.why is Why.UNEXPECTED_ANSWER:
                # An answer that cannot be read is transient for a few reads in a row, then
                # the task fails saying what was unexpected.
                assert status == 200
                for read in range(2, jobs.UNEXPECTED_READS + 1):
                    assert not task.is_terminal, (read, task.status)
                    outcome = jobs.poll(task.pk, reschedule=False)
                    task.refresh_from_db()
                assert outcome.did is Did.FAILED, outcome
                assert task.status == TaskStatus.FAILED
                assert task.error_message.startswith("Unexpected provider response: ")
            elif status == 200 and task.status == TaskStatus.FAILED:
                # Failed on the first read only when the provider said so.
                assert said_it_failed(_with_id(value, task.provider_task_id), task), value

        check()


# -- Q5: a provider that hangs ---------------------------------------------------------------


class HangingProvider:
    """Accepts connections, reads the request, never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        self.stopped = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.held.append(conn)

    def close(self) -> None:
        self.stopped.set()
        for conn in self.held:
            conn.close()
        self.sock.close()


@pytest.fixture
def hanging() -> Iterator[HangingProvider]:
    server = HangingProvider()
    yield server
    server.close()


class HangingProviderTests:
    def test_calls_end_at_the_http_timeout_and_are_handled_by_kind(
        self,
        campaign: Campaign,
        settings: Any,
        redis_conn: Any,
        hanging: HangingProvider,
        logs: Any,
    ) -> None:
        """Q5. Every provider call is bounded by HTTP_TIMEOUT (here 1 s per phase), far
        inside RQ's job timeout, so the job itself ends and says what happened: a read is
        tried again later; a WaveSpeed submit that got no answer fails as ambiguous (it may
        have been billed); a Wave submit is retried with the same Idempotency-Key."""
        settings.IMAGEN_ASSETS["HTTP_TIMEOUT"] = 1.0
        for alias in ("wave", "wavespeed"):
            settings.IMAGEN_ASSETS["PROVIDERS"][alias]["OPTIONS"]["BASE_URL"] = hanging.url
        # A webhook secret an earlier test fetched would be cached (for a day): this test
        # counts the fetch, so it starts without one.
        cache.clear()
        running = running_wavespeed_task(campaign, "q5-read")
        [ws] = services.request_images(campaign=campaign, prompt="Hang", provider="wavespeed")
        [wave] = services.request_images(campaign=campaign, prompt="Hang", provider="wave")
        redis_conn.flushdb()

        assert jobs.poll(running.pk).did is Did.READ_FAILED
        assert [args for args, _ in scheduled("imagen_assets.jobs.poll")] == [(running.pk,)]

        assert jobs.submit(ws.pk).why is Why.AMBIGUOUS
        ws.refresh_from_db()
        assert ws.status == TaskStatus.FAILED
        assert "may or may not have reached the provider" in ws.error_message

        assert jobs.submit(wave.pk).did is Did.RETRYING
        wave.refresh_from_db()
        assert (wave.status, wave.attempts) == (TaskStatus.QUEUED, 1)
        assert [args for args, _ in scheduled("imagen_assets.jobs.submit")] == [(wave.pk,)]
        # The read, the two submits, and WaveSpeed's webhook-secret fetch (a failure there
        # is not fatal: polling still works), each ended by the timeout.
        assert len(hanging.held) == 4
