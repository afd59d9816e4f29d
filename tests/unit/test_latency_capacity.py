"""When status reads are due (imagen_assets.latency) and the shared concurrency cap
(imagen_assets.capacity): the schedule's arithmetic, what the jobs do with it, and the cap's
bookkeeping on one connection. The race between workers is tests/integration/
test_capacity_race.py, on PostgreSQL; the cap holding across real workers is
tests/integration/test_capacity_stack.py."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core import checks
from django.utils import timezone
from test_jobs import WAVE, WAVESPEED, reload
from unit_helpers import imagen_settings, make_campaign, make_task

from imagen_assets import capacity, conf, jobs, latency, lifecycle
from imagen_assets.jobs import Did, Outcome, Why
from imagen_assets.models import GenerationTask

pytestmark = pytest.mark.django_db


@pytest.fixture
def campaign():
    return make_campaign("latency")


def finished(
    campaign, seconds: float, *, provider: str = "wavespeed", ago: float = 60, **fields: Any
):
    """A succeeded task that took ``seconds`` from submit to done, ``ago`` seconds ago."""
    done = timezone.now() - timedelta(seconds=ago)
    fields.setdefault("status", "succeeded")
    return make_task(
        campaign,
        provider=provider,
        provider_task_id=f"done-{GenerationTask.objects.count()}",
        submitted_at=done - timedelta(seconds=seconds),
        completed_at=done,
        **fields,
    )


def with_cap(settings: Any, alias: str, cap: Any) -> None:
    config = imagen_settings()
    config["PROVIDERS"][alias]["OPTIONS"]["MAX_CONCURRENCY"] = cap
    settings.IMAGEN_ASSETS = config


# -- the expected duration -------------------------------------------------------------------


class ExpectedDurationTests:
    def test_the_default_until_three_tasks_have_finished(self, campaign):
        finished(campaign, 20)
        finished(campaign, 20)
        assert latency.expected_seconds("wavespeed", "wavespeed-ai/imagen4") == conf.get(
            "POLL_EXPECTED_SECONDS"
        )

    def test_the_median_of_the_provider_and_models_recent_tasks(self, campaign):
        for seconds in (4, 5, 30):
            finished(campaign, seconds)
        finished(campaign, 100, status="failed")  # a failure says nothing about speed
        finished(campaign, 100, provider="wave")  # another provider
        assert latency.expected_seconds("wavespeed", "wavespeed-ai/imagen4") == 5.0
        assert latency.expected_seconds("wavespeed", "google/imagen4") == conf.get(
            "POLL_EXPECTED_SECONDS"
        )

    def test_only_the_last_twenty_count(self, campaign):
        for _ in range(latency.SAMPLES):
            finished(campaign, 60, ago=7200)
        for _ in range(latency.SAMPLES):
            finished(campaign, 3)
        assert latency.expected_seconds("wavespeed", "wavespeed-ai/imagen4") == 3.0


# -- the schedule ----------------------------------------------------------------------------


class ScheduleTests:
    def test_first_read_just_before_the_expected_time(self):
        assert latency.first_read(10.0) == 9.0
        assert latency.first_read(0.1) == conf.get("POLL_INTERVAL")

    def test_a_task_read_early_waits_until_it_may_be_done(self):
        sent = timezone.now()
        assert latency.next_read(sent, 10.0, now=sent + timedelta(seconds=2)) == pytest.approx(7.0)

    def test_short_intervals_while_about_due_then_backing_off_with_lateness(self):
        sent = timezone.now()
        interval = conf.get("POLL_INTERVAL")

        def at(elapsed: float) -> float:
            return latency.next_read(sent, 10.0, now=sent + timedelta(seconds=elapsed))

        assert at(9.5) == interval
        assert at(10.5) == interval
        assert at(20.0) == pytest.approx(5.0)  # 10 s late: (1.5 - 1) x 10
        assert at(600.0) == conf.get("POLL_MAX_INTERVAL")

    def test_the_providers_progress_says_when(self):
        sent = timezone.now()
        # Half done after 4 s: the other half in about 4 s more, whatever the median says.
        assert latency.next_read(
            sent, 30.0, progress=50, now=sent + timedelta(seconds=4)
        ) == pytest.approx(4.0)
        assert latency.next_read(
            sent, 30.0, progress=99, now=sent + timedelta(seconds=4)
        ) == conf.get("POLL_INTERVAL")


class ScheduledReadsTests:
    def test_the_first_read_follows_what_the_provider_has_been_taking(
        self, campaign, use_http, enqueued
    ):
        for seconds in (10, 12, 14):
            finished(campaign, seconds)
        task = make_task(campaign, provider="wavespeed")
        use_http(("POST", WAVESPEED.submit_url, WAVESPEED.submitted()))

        jobs.submit(task.pk)

        assert [(c.func, c.delay) for c in enqueued] == [(jobs.poll, pytest.approx(0.9 * 12))]
        due = reload(task).next_poll_at - reload(task).submitted_at
        assert due.total_seconds() == pytest.approx(0.9 * 12, abs=0.01)

    def test_a_running_wave_task_is_read_again_when_its_progress_says(
        self, campaign, use_http, enqueued
    ):
        sent = timezone.now() - timedelta(seconds=6)
        task = make_task(
            campaign,
            provider="wave",
            status="submitted",
            provider_task_id=WAVE.task_id,
            submitted_at=sent,
        )
        use_http(("GET", WAVE.status_url, WAVE.state("processing", progress=75)))

        jobs.poll(task.pk)

        # 75 % in 6 s: the rest in about 2 s.
        assert [(c.func, c.delay) for c in enqueued] == [(jobs.poll, pytest.approx(2.0, abs=0.2))]


# -- the cap ---------------------------------------------------------------------------------


def running(campaign, n: int, provider: str = "wave") -> list[GenerationTask]:
    return [
        make_task(
            campaign,
            provider=provider,
            status="submitted",
            provider_task_id=f"running-{i}",
            submitted_at=timezone.now(),
        )
        for i in range(n)
    ]


class CapTests:
    def test_a_full_provider_is_not_called_and_the_task_waits_saying_why(
        self, campaign, settings, use_http, enqueued
    ):
        with_cap(settings, "wave", 2)
        running(campaign, 2)
        task = make_task(campaign, provider="wave")
        use_http()  # any call fails the test

        outcome = jobs.submit(task.pk)

        task = reload(task)
        assert outcome == Outcome(Did.WAITING, Why.PROVIDER_FULL)
        assert task.status == "queued" and task.provider_task_id == ""
        assert task.attempts == 0  # waiting is not an attempt
        assert task.submit_lease_until is None and task.submit_started_at is None
        assert task.error_message == "Waiting for Wave: 2 tasks are running, its limit."
        assert enqueued == []  # no job: a slot freeing up sends it
        assert capacity.counts("wave") == (2, 1)

    def test_a_submit_under_way_takes_a_slot(self, campaign, settings, use_http, enqueued):
        with_cap(settings, "wave", 1)
        make_task(campaign, provider="wave", submit_started_at=timezone.now())
        task = make_task(campaign, provider="wave")
        use_http()

        assert jobs.submit(task.pk) == Outcome(Did.WAITING, Why.PROVIDER_FULL)

    def test_below_the_cap_the_task_goes(self, campaign, settings, use_http, enqueued):
        with_cap(settings, "wave", 2)
        running(campaign, 1)
        task = make_task(campaign, provider="wave")
        use_http(("POST", WAVE.submit_url, WAVE.submitted()))

        assert jobs.submit(task.pk).did is Did.SUBMITTED
        assert capacity.counts("wave") == (2, 0)

    def test_other_providers_do_not_count(self, campaign, settings, use_http, enqueued):
        with_cap(settings, "wave", 1)
        running(campaign, 3, provider="wavespeed")
        task = make_task(campaign, provider="wave")
        use_http(("POST", WAVE.submit_url, WAVE.submitted()))

        assert jobs.submit(task.pk).did is Did.SUBMITTED

    def test_a_task_leaving_flight_sends_the_oldest_waiting_ones(
        self, campaign, settings, use_http, enqueued
    ):
        with_cap(settings, "wave", 1)
        (busy,) = running(campaign, 1)
        GenerationTask.objects.filter(pk=busy.pk).update(provider_task_id=WAVE.task_id)
        first = make_task(campaign, provider="wave")
        second = make_task(campaign, provider="wave")
        use_http(("GET", WAVE.status_url, WAVE.failed()[0]))

        jobs.poll(busy.pk)

        assert reload(busy).status == "failed"
        assert [(c.func, c.args) for c in enqueued] == [(jobs.submit_many, ([first.pk],))]
        assert second.pk not in enqueued[0].args[0]

    def test_no_cap_sends_nothing_when_a_task_ends(self, campaign, use_http, enqueued):
        (busy,) = running(campaign, 1)
        GenerationTask.objects.filter(pk=busy.pk).update(provider_task_id=WAVE.task_id)
        make_task(campaign, provider="wave")
        use_http(("GET", WAVE.status_url, WAVE.failed()[0]))

        jobs.poll(busy.pk)

        assert enqueued == []

    def test_waiting_tasks_held_for_a_retry_are_not_sent_early(self, campaign, settings):
        with_cap(settings, "wave", 5)
        held = make_task(
            campaign, provider="wave", submit_lease_until=timezone.now() + timedelta(minutes=1)
        )
        ready = make_task(campaign, provider="wave")
        assert capacity.waiting_to_send("wave") == [ready.pk]
        assert capacity.counts("wave") == (0, 2)
        assert held.pk not in capacity.waiting_to_send("wave")

    def test_the_reconciler_sends_only_what_fits(self, campaign, settings, enqueued):
        with_cap(settings, "wave", 2)
        running(campaign, 1)
        tasks = [make_task(campaign, provider="wave") for _ in range(3)]
        GenerationTask.objects.filter(status="queued").update(
            updated_at=timezone.now() - timedelta(hours=1)
        )

        counts = jobs.reconcile()

        assert counts["submit"] == 1
        assert [(c.func, c.args) for c in enqueued] == [(jobs.submit_many, ([tasks[0].pk],))]

    def test_a_claim_given_back_keeps_the_attempt_count(self, campaign):
        task = make_task(campaign, provider="wave")
        lease = timezone.now() + timedelta(minutes=1)
        assert lifecycle.claim_submit(task.pk, lease)
        lifecycle.wait_for_slot(task.pk, lease, "Waiting")
        task = reload(task)
        assert (task.attempts, task.submit_lease_until, task.error_message) == (0, None, "Waiting")

    @pytest.mark.parametrize("bad", [0, -1, 2.5, "50", True])
    def test_a_cap_that_is_not_a_whole_number_of_at_least_one_is_refused(self, settings, bad):
        with_cap(settings, "wave", bad)
        found = [m for m in checks.run_checks() if m.id == "imagen_assets.E037"]
        assert len(found) == 1
        assert "['wave']['OPTIONS']['MAX_CONCURRENCY'] must be a whole number" in found[0].msg
        assert capacity.cap_of("wave") is None  # never half-applied


class SubmitManyTests:
    # From threads (each its own connection) in tests/integration/test_capacity_stack.py
    # and the benchmarks: SQLite's test database here is one connection's.
    def test_each_task_is_sent_once(self, settings, use_http, enqueued):
        settings.IMAGEN_ASSETS = imagen_settings(JOB_THREADS=1)
        campaign = make_campaign("threads")
        tasks = [make_task(campaign, provider="wavespeed") for _ in range(3)]
        http = use_http(*[("POST", WAVESPEED.submit_url, WAVESPEED.submitted())] * 3)

        outcomes = jobs.submit_many([task.pk for task in tasks])

        assert [outcome.did for outcome in outcomes] == [Did.SUBMITTED] * 3
        assert len(http.requests) == 3
        assert {reload(task).status for task in tasks} == {"submitted"}

    def test_queued_in_jobs_of_submit_threads(self, settings, enqueued):
        settings.IMAGEN_ASSETS = imagen_settings(JOB_THREADS=2)
        assert jobs.queue_submits([1, 2, 3, 4, 5])
        assert [c.args for c in enqueued] == [([1, 2],), ([3, 4],), ([5],)]


class CapEdgeTests:
    def test_a_submit_cut_short_is_sent_again_without_a_slot_of_its_own(
        self, campaign, settings, use_http, enqueued
    ):
        # Wave takes the same idempotency key twice as one task: the earlier attempt holds
        # its slot already; counting it against itself would keep it waiting for good.
        with_cap(settings, "wave", 1)
        task = make_task(campaign, provider="wave", submit_started_at=timezone.now())
        use_http(("POST", WAVE.submit_url, WAVE.submitted()))

        assert jobs.submit(task.pk).did is Did.SUBMITTED

    def test_a_refused_submit_is_waiting_when_the_lock_is_released(self, campaign, settings):
        with_cap(settings, "wave", 1)
        running(campaign, 1)
        task = make_task(campaign, provider="wave")
        lease = timezone.now() + timedelta(minutes=1)
        assert lifecycle.claim_submit(task.pk, lease)

        started, count = capacity.start_submit(task.pk, lease, "wave", 1, lambda n: f"{n} running")

        # Given back in the same transaction: a slot freed right after finds it.
        assert (started, count) == (capacity.Start.FULL, 1)
        GenerationTask.objects.filter(status="submitted").update(status="succeeded")
        assert capacity.waiting_to_send("wave") == [task.pk]
        assert reload(task).error_message == "1 running"

    def test_a_cancel_frees_the_slot_for_the_oldest_waiting_task(
        self, campaign, settings, enqueued
    ):
        from imagen_assets import cancels

        with_cap(settings, "wavespeed", 1)
        (busy,) = running(campaign, 1, provider="wavespeed")
        waiting = make_task(campaign, provider="wavespeed")

        cancels.cancel(busy.images.values_list("pk", flat=True))

        assert reload(busy).status == "cancelled"
        assert [(c.func, c.args) for c in enqueued] == [(jobs.submit_many, ([waiting.pk],))]

    def test_a_webhook_for_a_task_not_found_yet_stays_claimed_until_its_retry(
        self, campaign, enqueued
    ):
        from imagen_assets.models import WebhookEvent

        early = WebhookEvent.objects.create(
            provider="wavespeed", event_id="evt-early", provider_task_id="not-yet"
        )

        outcome = jobs.process_webhook(early.pk)

        early.refresh_from_db()
        assert outcome.did is Did.WAITING
        # Other jobs' batches leave it alone until its own retry comes.
        assert early.claimed_until is not None and early.claimed_until > timezone.now()
        assert [c.func for c in enqueued] == [jobs.process_webhook]

    def test_one_rows_failure_in_a_batch_leaves_the_others_done(self, monkeypatch):
        def flaky(pk: int) -> Outcome:
            if pk == 2:
                raise RuntimeError("boom")
            return Outcome(Did.READ)

        outcomes = jobs.in_threads(flaky, [1, 2, 3])

        assert [o.did for o in outcomes] == [Did.READ, Did.FAILED, Did.READ]
        with pytest.raises(RuntimeError):  # a job of one row fails as any job does
            jobs.in_threads(flaky, [2])


class MallocArenaTests:
    """The worker caps glibc's malloc arenas (a thread each) before it forks work horses."""

    def test_capped_on_glibc(self, monkeypatch):
        from imagen_assets import worker

        monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
        assert worker.limit_malloc_arenas() is True  # Debian: glibc

    def test_the_environment_decides_when_it_says(self, monkeypatch):
        from imagen_assets import worker

        monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
        assert worker.limit_malloc_arenas() is False
