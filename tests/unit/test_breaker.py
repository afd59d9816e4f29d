"""The circuit breaker's state machine (imagen_assets/breaker.py) with a clock the tests move,
and the jobs that wait on it instead of spending their retries (docs/reliability.md P7, P4)."""

from __future__ import annotations

import io
import json
import logging
from datetime import datetime, timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from unit_helpers import WS_BASE, WS_KEY, fixture, json_response, make_campaign, make_task

from imagen_assets import breaker, conf, jobs
from imagen_assets.jobs import Did, Outcome, Why
from imagen_assets.models import GenerationTask, ProviderHealth
from imagen_assets.providers import ProviderError
from imagen_assets.status import BreakerState

pytestmark = pytest.mark.django_db

START = timezone.make_aware(datetime(2026, 3, 2, 14, 2))
PROBE = 90.0
WS_SUBMIT = f"{WS_BASE}/api/v3/wavespeed-ai/imagen4"
WS_ID = "8a1b2c3d4e5f40718293a4b5c6d7e8f9"


def down(message: str = "could not connect (ConnectError)") -> ProviderError:
    return ProviderError("Wave", message, retryable=True)


def answer(status: int, message: str = "no") -> ProviderError:
    return ProviderError("Wave", message, status_code=status, alias="wave")


def at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


def admit(seconds: float) -> breaker.Wait | None:
    return breaker.admit("wave", "Wave", probe_seconds=PROBE, now=at(seconds))


def state() -> BreakerState:
    return BreakerState(ProviderHealth.objects.get(provider="wave").state)


def fail_times(count: int, start: float = 0) -> None:
    for n in range(count):
        breaker.failed("wave", down(), now=at(start + n))


@pytest.fixture(autouse=True)
def _breaker_settings(settings):
    settings.IMAGEN_ASSETS["BREAKER_THRESHOLD"] = 3
    settings.IMAGEN_ASSETS["BREAKER_COOLDOWN"] = 60


class StateMachineTests:
    def test_a_provider_never_seen_failing_is_admitted_without_a_row(self):
        assert admit(0) is None
        assert not ProviderHealth.objects.exists()

    def test_failures_below_the_threshold_keep_it_closed(self):
        fail_times(2)

        assert state() == BreakerState.CLOSED
        assert admit(3) is None

    def test_the_threshold_opens_it_and_callers_wait_for_the_cool_down(self):
        fail_times(3)  # at 0, 1 and 2 s

        assert state() == BreakerState.OPEN
        wait = admit(10)
        assert wait is not None
        assert wait.until == at(2 + 60)
        assert wait.since == START  # the first failure of the run
        assert wait.reason.startswith("Wave is not answering since ")
        assert wait.reason.endswith("; new jobs wait until it recovers.")

    def test_an_answer_in_between_resets_the_count(self):
        fail_times(2)
        breaker.record("wave", answer(400))  # the provider answered: it is up
        fail_times(2, start=10)

        assert state() == BreakerState.CLOSED

    @pytest.mark.parametrize("status", [400, 404, 422, 429])
    def test_any_answer_below_500_counts_as_up(self, status):
        fail_times(2)
        breaker.record("wave", answer(status))

        health = ProviderHealth.objects.get(provider="wave")
        assert (health.failures, health.failing_since) == (0, None)

    @pytest.mark.parametrize("status", [500, 502, 503, 504])
    def test_a_5xx_counts_as_a_failure(self, status):
        for _ in range(3):
            breaker.record("wave", answer(status))

        assert state() == BreakerState.OPEN

    def test_after_the_cool_down_exactly_one_caller_probes(self):
        fail_times(3)

        assert admit(62) is None  # the probe
        assert state() == BreakerState.HALF_OPEN
        others = admit(63)
        assert others is not None
        # Not the probe's whole allowance: the others look again shortly.
        assert others.until == at(63 + breaker.PROBE_RECHECK_SECONDS)

    def test_a_successful_probe_closes_it(self):
        fail_times(3)
        assert admit(62) is None

        breaker.answered("wave")

        assert state() == BreakerState.CLOSED
        assert admit(63) is None

    def test_a_failed_probe_opens_it_again_for_another_cool_down(self):
        fail_times(3)
        assert admit(62) is None

        breaker.failed("wave", down(), now=at(70))

        assert state() == BreakerState.OPEN
        wait = admit(71)
        assert wait is not None
        assert wait.until == at(70 + 60)
        assert wait.since == START  # still the same outage

    def test_a_probe_whose_worker_died_is_taken_over_when_its_allowance_lapses(self):
        fail_times(3)
        assert admit(62) is None  # ... and that worker is never heard of again

        assert admit(62 + PROBE - 1) is not None
        assert admit(62 + PROBE + 1) is None
        assert state() == BreakerState.HALF_OPEN

    def test_a_late_failure_while_open_does_not_push_the_cool_down_back(self):
        fail_times(3)
        breaker.failed("wave", down(), now=at(30))  # a call admitted before it opened

        wait = admit(31)
        assert wait is not None
        assert wait.until == at(2 + 60)

    def test_each_provider_has_its_own_breaker(self):
        fail_times(3)

        assert breaker.admit("wavespeed", "WaveSpeed AI", probe_seconds=PROBE) is None

    def test_delay_is_never_before_the_time_and_spread(self, settings):
        wait = breaker.Wait(until=at(60), name="Wave", since=START)

        delays = {wait.delay(now=at(0)) for _ in range(20)}

        assert min(delays) >= 60
        assert max(delays) <= 60 + breaker.PROBE_RECHECK_SECONDS
        assert len(delays) > 1


class KeyRefusedTests:
    def test_a_refused_key_is_logged_at_error_once_and_raised_as_an_alert(self, caplog):
        with caplog.at_level(logging.ERROR, logger="imagen_assets.breaker"):
            breaker.record("wave", answer(401, "Invalid API key"))
            breaker.record("wave", answer(403, "Invalid API key"))

        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1
        assert "refused the API key (HTTP 401)" in errors[0].getMessage()
        assert "IMAGEN_ASSETS['PROVIDERS']['wave']['OPTIONS']['API_KEY']" in errors[0].getMessage()
        assert [h.provider for h in breaker.alerts()] == ["wave"]

    def test_a_call_that_succeeds_clears_the_alert_and_a_new_refusal_logs_again(self, caplog):
        breaker.record("wave", answer(401))
        breaker.record("wave", None)

        assert breaker.alerts() == []
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="imagen_assets.breaker"):
            breaker.record("wave", answer(401))
        assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1

    def test_a_refused_key_does_not_open_the_breaker(self):
        for _ in range(5):
            breaker.record("wave", answer(401))

        assert state() == BreakerState.CLOSED


# -- the jobs ------------------------------------------------------------------------------


@pytest.fixture
def campaign():
    return make_campaign("breaker")


def open_breaker(alias: str = "wavespeed") -> None:
    now = timezone.now()
    ProviderHealth.objects.create(
        provider=alias,
        state=BreakerState.OPEN,
        failures=5,
        failing_since=now - timedelta(minutes=3),
        retry_at=now + timedelta(seconds=45),
        last_error="could not connect",
    )


def cooled_down_breaker(alias: str = "wavespeed") -> None:
    """An open breaker whose cool-down has just ended: the next caller may probe."""
    ProviderHealth.objects.create(
        provider=alias,
        state=BreakerState.OPEN,
        failures=3,
        failing_since=timezone.now() - timedelta(minutes=2),
        retry_at=timezone.now() - timedelta(seconds=1),
    )


def reload(task: GenerationTask) -> GenerationTask:
    return GenerationTask.objects.get(pk=task.pk)


class JobsWaitTests:
    def test_a_submit_waits_without_calling_or_counting_an_attempt(
        self, campaign, use_http, enqueued
    ):
        open_breaker()
        task = make_task(campaign, provider="wavespeed")
        use_http()  # any request fails the test

        outcome = jobs.submit(task.pk)

        assert outcome.did == Did.WAITING
        assert outcome.why == Why.PROVIDER_DOWN
        assert outcome.delay >= 44
        task = reload(task)
        assert task.attempts == 0
        assert task.status == "queued"
        assert "is not answering since" in task.error_message
        assert task.submit_lease_until > timezone.now() + timedelta(seconds=40)
        assert [(e.name, e.args) for e in enqueued] == [("submit", (task.pk,))]
        assert enqueued[0].delay == outcome.delay

    def test_the_reconciler_leaves_a_waiting_submit_alone(
        self, campaign, use_http, enqueued, settings
    ):
        open_breaker()
        task = make_task(campaign, provider="wavespeed")
        use_http()
        jobs.submit(task.pk)
        settings.IMAGEN_ASSETS["RECONCILE_AFTER"] = 0

        assert jobs.reconcile()["submit"] == 0

    def test_a_task_whose_deadline_passes_while_waiting_fails_saying_why(
        self, campaign, use_http, enqueued
    ):
        open_breaker()
        task = make_task(campaign, provider="wavespeed")
        GenerationTask.objects.filter(pk=task.pk).update(
            created_at=timezone.now() - timedelta(minutes=16)
        )
        use_http()

        assert jobs.submit(task.pk) == Outcome(Did.FAILED, Why.PROVIDER_DOWN)
        task = reload(task)
        assert task.status == "failed"
        assert task.error_message.startswith("WaveSpeed AI has not been answering since ")
        assert "within the 15 minutes" in task.error_message
        assert enqueued == []

    def test_a_poll_waits_without_calling_or_counting_a_read(self, campaign, use_http, enqueued):
        open_breaker()
        task = make_task(
            campaign,
            provider="wavespeed",
            status="submitted",
            provider_task_id=WS_ID,
            submitted_at=timezone.now(),
        )
        use_http()

        outcome = jobs.poll(task.pk)

        assert outcome.did == Did.WAITING
        task = reload(task)
        assert task.polls == 0
        assert task.next_poll_at > timezone.now() + timedelta(seconds=40)
        assert [e.name for e in enqueued] == ["poll"]

    def test_a_poll_past_the_deadline_while_down_says_so(self, campaign, use_http, enqueued):
        open_breaker()
        task = make_task(
            campaign,
            provider="wavespeed",
            status="submitted",
            provider_task_id=WS_ID,
            submitted_at=timezone.now() - timedelta(minutes=20),
        )
        use_http()

        assert jobs.poll(task.pk) == Outcome(Did.FAILED, Why.TIMEOUT)
        message = reload(task).error_message
        assert "did not finish within 15 minutes" in message
        assert "WaveSpeed AI has not been answering since" in message

    def test_repeated_5xx_submits_open_the_breaker_then_the_next_task_waits(
        self, campaign, use_http, enqueued, settings
    ):
        tasks = [make_task(campaign, provider="wavespeed") for _ in range(4)]
        use_http(*[("POST", WS_SUBMIT, json_response(503, {"message": "busy"}))] * 3)

        outcomes = [jobs.submit(task.pk) for task in tasks]

        assert [o.did for o in outcomes] == [Did.RETRYING] * 3 + [Did.WAITING]
        assert [reload(t).attempts for t in tasks] == [1, 1, 1, 0]
        assert ProviderHealth.objects.get(provider="wavespeed").state == BreakerState.OPEN

    def test_a_successful_submit_closes_a_half_open_breaker(self, campaign, use_http, enqueued):
        cooled_down_breaker()
        task = make_task(campaign, provider="wavespeed")
        use_http(("POST", WS_SUBMIT, json_response(200, fixture("wavespeed/submit_created.json"))))

        assert jobs.submit(task.pk).did == Did.SUBMITTED
        health = ProviderHealth.objects.get(provider="wavespeed")
        assert (health.state, health.failures) == (BreakerState.CLOSED, 0)

    def test_an_early_run_of_a_held_submit_does_not_take_the_probe(
        self, campaign, use_http, enqueued
    ):
        cooled_down_breaker()
        held = make_task(
            campaign,
            provider="wavespeed",
            submit_lease_until=timezone.now() + timedelta(seconds=60),
        )
        use_http()

        assert jobs.submit(held.pk) == Outcome(Did.SKIPPED, Why.ALREADY_SUBMITTED)
        assert ProviderHealth.objects.get(provider="wavespeed").state == BreakerState.OPEN

    def test_a_submit_that_ends_without_calling_hands_the_probe_on(
        self, campaign, use_http, enqueued, settings
    ):
        cooled_down_breaker()
        # Refused before any call: too many attempts already.
        spent = make_task(
            campaign,
            provider="wavespeed",
            attempts=conf.get("SUBMIT_MAX_ATTEMPTS") + 1,
        )
        use_http()

        assert jobs.submit(spent.pk).did == Did.FAILED
        health = ProviderHealth.objects.get(provider="wavespeed")
        # Not left half-open (the provider shown as not answering) until the claim lapses:
        # the next job may probe at once.
        assert health.state == BreakerState.OPEN
        assert health.retry_at <= timezone.now()
        assert breaker.admit("wavespeed", "WaveSpeed AI", probe_seconds=60) is None


class KeyRefusedJobTests:
    def test_a_401_fails_the_task_naming_the_setting_and_raises_the_alert(
        self, campaign, use_http, enqueued, caplog
    ):
        tasks = [make_task(campaign, provider="wavespeed") for _ in range(2)]
        refusal = json_response(401, {"code": 401, "message": "invalid authentication"})
        use_http(("POST", WS_SUBMIT, refusal), ("POST", WS_SUBMIT, refusal))

        with caplog.at_level(logging.INFO):
            outcomes = [jobs.submit(task.pk) for task in tasks]

        assert outcomes == [Outcome(Did.FAILED, Why.KEY_REFUSED)] * 2
        task = reload(tasks[0])
        assert task.status == "failed"
        assert task.error_code == "api_key"
        assert task.error_message.startswith(
            "WaveSpeed AI refused the API key (HTTP 401): check "
            "IMAGEN_ASSETS['PROVIDERS']['wavespeed']['OPTIONS']['API_KEY']."
        )
        assert enqueued == []  # not retried
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1  # once, not once per task
        assert WS_KEY not in caplog.text
        assert [h.provider for h in breaker.alerts()] == ["wavespeed"]


class StatusCommandTests:
    def test_imagen_status_says_on_stderr_which_providers_are_down(self, campaign):
        open_breaker("wavespeed")
        make_task(campaign, provider="wavespeed")
        out, err = io.StringIO(), io.StringIO()

        call_command("imagen_status", "--json", stdout=out, stderr=err)

        assert "WaveSpeed AI is not answering since" in err.getvalue()
        lines = out.getvalue().splitlines()
        assert len(lines) == 1
        assert json.loads(lines[0])["status"] == "queued"

    def test_imagen_status_is_quiet_about_providers_that_answer(self, campaign):
        out, err = io.StringIO(), io.StringIO()

        call_command("imagen_status", stdout=out, stderr=err)

        assert err.getvalue() == ""
