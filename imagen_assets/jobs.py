"""The RQ jobs: submit, poll, complete, process a webhook, reconcile, sweep orphan files.

Each is a thin entry point: it takes primitive ids, reloads the rows, asks the provider
(:mod:`imagen_assets.providers`) or stores results (:mod:`imagen_assets.ingest`), records
what happened through :mod:`imagen_assets.lifecycle` and returns an :class:`Outcome`.
Every job is safe to run twice or concurrently; no job sleeps waiting for a provider (a
poll that finds the task still running schedules another poll and exits); work is queued
through :mod:`imagen_assets.queueing`. The rules are in ``docs/design.md``.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.db.models import Max, Q
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from imagen_assets import breaker, capacity, conf, ingest, latency, lifecycle, orphans, queueing
from imagen_assets.hosts import ResultHosts
from imagen_assets.imaging import Provenance
from imagen_assets.ingest import NotStored
from imagen_assets.models import GenerationTask, WebhookEvent
from imagen_assets.money import dollars
from imagen_assets.outcomes import Did, Outcome, Why
from imagen_assets.providers import (
    GenerationParams,
    Output,
    Provider,
    ProviderError,
    ProviderTask,
    WebhookAuth,
    get_provider,
    get_provider_class,
)
from imagen_assets.status import IN_FLIGHT_TASK_STATUSES, OPEN_IMAGE_STATUSES, TaskStatus

logger = logging.getLogger(__name__)

# How long a job's claim on a webhook event lasts: another job leaves it alone until then
# (the reconciler's run for it comes after RECONCILE_AFTER, two minutes by default).
WEBHOOK_CLAIM_SECONDS = 90
# How long a webhook for a task we cannot find yet is retried before it is filed as orphaned
# (the provider may answer before our submit transaction commits).
ORPHAN_GRACE_SECONDS = 60
# A scheduled read may start this much before the time it was scheduled for: a stock RQ
# scheduler keeps due times in whole seconds (a job due at 12.9 s is moved to the queue at
# 12.0 s; imagen_assets.worker's is exact), plus 0.5 s for the clocks of different hosts.
# Less, and a read released early is refused as "not due" and nothing reads the task again
# until the reconciler does.
POLL_SLACK_SECONDS = 1.5
# Status reads in a row whose answer cannot be read (not JSON, a missing field, an unknown
# status) before the task fails (docs/reliability.md P6): a provider mid-deploy or a proxy's
# error page may answer oddly once or twice.
UNEXPECTED_READS = 3


def _skipped(why: Why) -> Outcome:
    return Outcome(Did.SKIPPED, why)


def _failed(why: Why | None = None) -> Outcome:
    return Outcome(Did.FAILED, why)


# -- helpers ---------------------------------------------------------------------------------


def backoff_delay(attempt: int, retry_after: float | None = None) -> float:
    """Full-jitter exponential backoff (up to 2, 4, 8 ... s, at most 5 min), never before
    the provider's Retry-After."""
    delay = random.uniform(1.0, min(300.0, 2.0 * 2 ** max(attempt - 1, 0)))
    return max(delay, retry_after or 0.0)


def poll_delay(polls: int) -> float:
    """The wait before reading again after a read that failed (no answer, 5xx, an answer
    that could not be read): POLL_INTERVAL x POLL_BACKOFF per read so far, at most
    POLL_MAX_INTERVAL. A read that worked waits as :mod:`imagen_assets.latency` says."""
    base = conf.get("POLL_INTERVAL") * conf.get("POLL_BACKOFF") ** polls
    return float(min(base, conf.get("POLL_MAX_INTERVAL")))


def _next_read(task: GenerationTask) -> float:
    expected = latency.expected_seconds(task.provider, task.model)
    return latency.next_read(task.submitted_at, expected, task.progress)


def callback_url(task: GenerationTask, provider: Provider) -> str | None:
    """The URL the provider should call for this task, or None when webhooks are off."""
    base = conf.get("WEBHOOK_BASE_URL")
    if not base:
        return None
    if provider.webhook_auth is WebhookAuth.URL_TOKEN:
        path = reverse(
            "imagen_assets:webhook_token",
            kwargs={"provider": task.provider, "token": task.callback_token},
        )
    else:
        path = reverse("imagen_assets:webhook", kwargs={"provider": task.provider})
    return str(base).rstrip("/") + path


def _redact(url: str | None, task: GenerationTask) -> str | None:
    return url.replace(task.callback_token, "<token>") if url else url


def _params(task: GenerationTask) -> GenerationParams:
    return GenerationParams(
        prompt=task.prompt,
        aspect_ratio=task.aspect_ratio,
        num_images=task.num_images,
        seed=task.seed,
        negative_prompt=task.negative_prompt,
    )


def _fail_unconfigured(task: GenerationTask, exc: ImproperlyConfigured) -> Outcome:
    lifecycle.fail_task(task.pk, f"Provider {task.provider!r} is not configured: {exc}", "config")
    return _failed(Why.CONFIGURATION)


# -- submit ----------------------------------------------------------------------------------


def _after_state(task: GenerationTask) -> None:
    """A state was applied to ``task``: if that ended its flight, its provider's waiting
    tasks may have a slot now (:mod:`imagen_assets.capacity`)."""
    if task.status not in IN_FLIGHT_TASK_STATUSES:
        send_waiting(task.provider)


def in_threads(func: Callable[[int], Outcome], ids: Sequence[int]) -> list[Outcome]:
    """``func(id)`` for each of ``ids``, from up to ``JOB_THREADS`` threads of this job (in
    it, with one thread), each closing its database connections when done."""

    def guarded(pk: int) -> Outcome:
        try:
            return func(pk)
        except Exception as exc:
            if len(ids) == 1:
                raise  # the job's own failure, as for any job
            # One row's failure is its own: the others' outcomes (and what the job does
            # after them) stand; the reconciler repairs this one.
            logger.exception("Row %s failed in a job of %d rows", pk, len(ids))
            return Outcome(Did.FAILED, detail=repr(exc)[:200])

    def one(pk: int) -> Outcome:
        try:
            return guarded(pk)
        finally:
            connections.close_all()  # this thread's connections only

    workers = max(1, min(int(conf.get("JOB_THREADS")), len(ids)))
    if workers == 1:
        return [guarded(pk) for pk in ids]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, ids))


def submit_many(task_ids: list[int]) -> list[Outcome]:
    """Submit several tasks at once, each as :func:`submit` does, from threads
    (:func:`in_threads`): one request's tasks reach the provider together, not one job
    after another. Their first status reads are then one job, :func:`poll_many`, due
    when the last of them is (tasks sent together are expected done together)."""
    outcomes = in_threads(lambda pk: submit(pk, schedule_read=False), task_ids)
    sent = [pk for pk, outcome in zip(task_ids, outcomes, strict=True) if _read_later(outcome)]
    if sent:
        due = GenerationTask.objects.filter(pk__in=sent).aggregate(due=Max("next_poll_at"))["due"]
        delay = (due - timezone.now()).total_seconds() if due is not None else 0.0
        if not queueing.enqueue(
            poll_many, sent, delay=max(delay, 0.001), timeout=conf.BATCH_JOB_TIMEOUT
        ):
            logger.error("Could not queue the reads of tasks %s; the reconciler will.", sent)
    return outcomes


#: This process's threads that store results (see :func:`store`), made when first needed.
_store_threads: ThreadPoolExecutor | None = None
_store_threads_lock = threading.Lock()


def _forget_store_threads() -> None:
    """In a forked child: the parent's threads are not there; make new ones when needed."""
    global _store_threads, _store_threads_lock
    _store_threads = None
    _store_threads_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_store_threads)


def store(task_id: int) -> Outcome:
    """:func:`complete` ``task_id``: in this thread when it is the main one, else on one of
    this process's ``STORE_THREADS`` threads. A job's threads (:func:`in_threads`) read
    and decide many tasks at once, but only that many of them write files at once: a
    storage may keep a client per thread that writes (django-storages' S3 keeps a boto3
    session per thread, about 13 MB each), and each decode holds pixels."""
    global _store_threads
    if threading.current_thread() is threading.main_thread():
        return complete(task_id)
    with _store_threads_lock:
        if _store_threads is None:
            _store_threads = ThreadPoolExecutor(
                max_workers=max(1, int(conf.get("STORE_THREADS"))),
                thread_name_prefix="imagen-store",
            )

    def run() -> Outcome:
        try:
            return complete(task_id)
        finally:
            connections.close_all()

    return _store_threads.submit(run).result()


def _read_later(outcome: Outcome) -> bool:
    """A submit that left its task at the provider, still to be read."""
    return outcome.did is Did.SUBMITTED and outcome.then is None


def poll_many(task_ids: list[int]) -> list[Outcome]:
    """Read several tasks at once, each as :func:`poll` does (a task done is stored in its
    thread, its images' downloads in threads of their own; one still running is read again
    alone, when :mod:`imagen_assets.latency` says)."""
    return in_threads(poll, task_ids)


def queue_submits(task_ids: Sequence[int]) -> bool:
    """Queue the submits of ``task_ids`` (committed), ``JOB_THREADS`` to a job; False
    when Redis refused one (the reconciler queues what is left)."""
    size = max(1, int(conf.get("JOB_THREADS")))
    for start in range(0, len(task_ids), size):
        chunk = list(task_ids[start : start + size])
        if not queueing.enqueue(submit_many, chunk, timeout=conf.BATCH_JOB_TIMEOUT):
            return False
    return True


def send_waiting(alias: str) -> None:
    """A task of ``alias`` left flight: queue the submits of the oldest tasks waiting for
    a slot (nothing for a provider without a cap)."""
    ids = capacity.waiting_to_send(alias)
    if ids:
        queue_submits(ids)


def submit(task_id: int, schedule_read: bool = True) -> Outcome:
    """:func:`_submit`; a task it failed frees its provider's slot (if it held one) for the
    oldest waiting task."""
    outcome = _submit(task_id, schedule_read)
    if outcome.did is Did.FAILED:
        _left_flight(task_id)
    return outcome


def _left_flight(task_id: int) -> None:
    """Task ``task_id`` ended: its provider's waiting tasks may have a slot now."""
    alias = GenerationTask.objects.filter(pk=task_id).values_list("provider", flat=True).first()
    if alias:
        send_waiting(alias)


def _submit(task_id: int, schedule_read: bool = True) -> Outcome:
    """Hand one task to its provider, exactly once, and save the provider's task id.

    A claim (a conditional UPDATE with a lease) makes a second concurrent run a no-op; the
    lease outlasts the provider call, and the id is saved only under the same claim, so a
    run that lost its claim cannot move the task. Only 429, 5xx and network errors are
    retried, later, with backoff; anything else fails the task with the provider's own
    message. An attempt that stopped mid-call (a crashed or killed worker) is not repeated
    for a provider without idempotency: it may have been billed, so the task fails.
    With ``schedule_read=False`` the caller queues the first status read (it is due at the
    task's ``next_poll_at``).
    """
    task = (
        GenerationTask.objects.filter(pk=task_id)
        .only(
            "provider",
            "status",
            "provider_task_id",
            "created_at",
            "submitted_at",
            "submit_lease_until",
        )
        .first()
    )
    if task is None or task.status != TaskStatus.QUEUED or task.provider_task_id:
        return _skipped(Why.ALREADY_SUBMITTED)
    # The same slack as for reads: RQ releases a delayed job up to a second early, and the
    # run may be on a host whose clock is a little behind the one that set the lease.
    slack = timedelta(seconds=POLL_SLACK_SECONDS)
    if task.submit_lease_until is not None and task.submit_lease_until - slack > timezone.now():
        # Another run holds the claim, or a retry is not due yet: this run could not claim
        # it, so it must not take the breaker's one probe either.
        return _skipped(Why.ALREADY_SUBMITTED)
    try:
        provider = get_provider(task.provider)
    except ImproperlyConfigured as exc:
        return _fail_unconfigured(task, exc)
    with provider:
        # Two calls at most (the webhook secret, the submit), each within its deadline
        # (docs/reliability.md P5), then some slack: the lease outlives the attempt.
        attempt_seconds = 2 * provider.deadline + 30
        wait = breaker.admit(task.provider, provider.display_name, probe_seconds=attempt_seconds)
        if wait is not None:
            return _submit_waits(task, wait)
        called = False
        try:
            lease = timezone.now() + timedelta(seconds=attempt_seconds)
            if not lifecycle.claim_submit(task_id, lease):
                return _skipped(Why.ALREADY_SUBMITTED)
            task = GenerationTask.objects.get(pk=task_id)
            refused = _refuse_attempt(task, provider)
            if refused is not None:
                return refused
            url = callback_url(task, provider)
            params = _params(task)
            try:
                body = provider.request_body(params, callback_url=_redact(url, task))
            except ValueError as exc:  # settings changed since the request was validated
                lifecycle.fail_task(
                    task_id, f"{provider.display_name} cannot take this request: {exc}", "invalid"
                )
                return _failed(Why.INVALID_REQUEST)
            if url:
                # A failure is not fatal: the webhook view tries again, and polling still works.
                try:
                    provider.prepare_webhooks()
                except ProviderError as exc:
                    logger.warning("Could not prepare %s webhooks: %s", task.provider, exc)
            # From here until the outcome is known, a crash leaves the attempt marked; with
            # a cap, only while the provider has a slot (imagen_assets.capacity).
            cap = provider.max_concurrency
            name = provider.display_name
            started, _running = capacity.start_submit(
                task_id,
                lease,
                task.provider,
                cap,
                lambda running: (
                    ngettext(
                        "Waiting for %(provider)s: %(running)d task is running, its limit.",
                        "Waiting for %(provider)s: %(running)d tasks are running, its limit.",
                        running,
                    )
                    % {"provider": name, "running": running}
                ),
            )
            if started is capacity.Start.GONE:
                return _skipped(Why.CLAIM_LOST)  # cancelled since the claim: nothing sent
            if started is capacity.Start.FULL:
                return Outcome(Did.WAITING, Why.PROVIDER_FULL)
            try:
                result = provider.submit(
                    params, idempotency_key=str(task.idempotency_key), callback_url=url
                )
            except ProviderError as exc:
                breaker.record(task.provider, exc)
                called = True
                failed = _submit_failed(task, exc, idempotent=provider.idempotent_submit)
                if cap is not None:
                    send_waiting(task.provider)  # its slot is free again
                return failed
            breaker.record(task.provider, None)
            called = True
        finally:
            if not called:
                # Ended without calling the provider: a probe it held goes to the next job.
                breaker.release_probe(task.provider)
    delay = latency.first_read(latency.expected_seconds(task.provider, task.model))
    if not lifecycle.record_submitted(task_id, lease, result.task_id, body, delay):
        if _cancelled_while_submitting(task_id, result.task_id):
            return _skipped(Why.CLAIM_LOST)
        logger.error(
            "Task %s: its submit claim was lost (lease expired or the task was failed) before "
            "%s answered; provider task %s is an orphan",
            task_id,
            task.provider,
            result.task_id,
        )
        return _skipped(Why.CLAIM_LOST)
    logger.info("Task %s submitted to %s as %s", task_id, task.provider, result.task_id)
    submitted = Outcome(Did.SUBMITTED, detail=result.task_id)
    if result.status.rank > TaskStatus.SUBMITTED.rank:
        _after_state(lifecycle.apply_state(task_id, result, counted_poll=False))
        if result.status == TaskStatus.SUCCEEDED:
            return Outcome(Did.SUBMITTED, detail=result.task_id, then=store(task_id))
    if schedule_read:  # else the caller does (submit_many: one read job for its tasks)
        queueing.enqueue(poll, task_id, delay=delay)
    return submitted


def _cancelled_while_submitting(task_id: int, provider_task_id: str) -> bool:
    """A person cancelled the task while its submit was under way, and the provider took
    it: ask the provider to cancel it too when it can, and keep its id on our task with
    what the provider may still charge. False when the task was not cancelled."""
    task = GenerationTask.objects.filter(pk=task_id, status=TaskStatus.CANCELLED).first()
    if task is None:
        return False
    refunded = False
    try:
        with get_provider(task.provider) as provider:
            name = provider.display_name
            if provider.supports_cancel:
                refunded = provider.cancel(provider_task_id)
    except (ImproperlyConfigured, ProviderError) as exc:
        name = task.provider
        logger.warning("Task %s: could not cancel %s upstream: %s", task_id, provider_task_id, exc)
    if refunded:
        message = _(
            "Cancelled while it was being sent; %(provider)s cancelled it too, so nothing is "
            "charged."
        ) % {"provider": name}
        lifecycle.note_cancel_outcome(task_id, message, refunded=True)
    else:
        message = _(
            "Cancelled while it was being sent; %(provider)s had already taken it and may "
            "still charge up to %(cost)s for it. Its result will not be stored."
        ) % {"provider": name, "cost": dollars(task.estimated_cost)}
    lifecycle.note_late_submit(task_id, provider_task_id, message)
    logger.info("Task %s was cancelled during its submit (refunded: %s)", task_id, refunded)
    return True


def _submit_waits(task: GenerationTask, wait: breaker.Wait) -> Outcome:
    """The provider is not answering (its breaker is open): try again when it may be,
    without counting an attempt; fail the task once its deadline has passed."""
    if _deadline_passed(task):
        lifecycle.fail_task(task.pk, wait.gave_up(conf.get("TASK_TIMEOUT") / 60), "unavailable")
        return _failed(Why.PROVIDER_DOWN)
    delay = wait.delay()
    until = timezone.now() + timedelta(seconds=max(0.0, delay - 1))
    if not lifecycle.defer_submit(task.pk, until, wait.reason):
        return _skipped(Why.ALREADY_SUBMITTED)
    queueing.enqueue(submit, task.pk, delay=delay)
    return Outcome(Did.WAITING, Why.PROVIDER_DOWN, delay=delay)


def _refuse_attempt(task: GenerationTask, provider: Provider) -> Outcome | None:
    """Fail the task instead of this attempt when repeating would be unsafe or endless;
    None to go on."""
    if task.submit_started_at is not None and not provider.idempotent_submit:
        _fail_ambiguous(
            task.pk,
            f"An earlier attempt to submit to {provider.display_name} stopped without an "
            "answer (the worker was stopped or crashed)",
        )
        return _failed(Why.INTERRUPTED)
    limit = conf.get("SUBMIT_MAX_ATTEMPTS")
    if task.attempts > limit:
        lifecycle.fail_task(
            task.pk,
            f"Gave up after {limit} attempts to submit to {provider.display_name}.",
            "attempts",
        )
        return _failed(Why.TOO_MANY_ATTEMPTS)
    return None


def _fail_ambiguous(task_id: int, what_happened: str) -> None:
    """Fail a submit whose outcome is unknown, for a provider that cannot take it twice."""
    lifecycle.fail_task(
        task_id,
        f"{what_happened}. The request may or may not have reached the provider, which "
        "offers no way to submit safely twice; it was not retried. Check the provider's "
        "dashboard before generating again.",
        "ambiguous",
    )


def _submit_failed(task: GenerationTask, exc: ProviderError, *, idempotent: bool) -> Outcome:
    attempts = task.attempts
    limit = conf.get("SUBMIT_MAX_ATTEMPTS")
    if exc.ambiguous and not idempotent:
        # The provider may have started (and will bill) the task; without an idempotency
        # key a second submit could pay twice, so a person decides.
        _fail_ambiguous(task.pk, str(exc))
        return _failed(Why.AMBIGUOUS)
    if exc.key_refused:
        lifecycle.fail_task(task.pk, str(exc), "api_key")
        return _failed(Why.KEY_REFUSED)
    if exc.retryable and attempts < limit:
        delay = backoff_delay(attempts, exc.retry_after)
        lifecycle.hold_submit(
            task.pk,
            until=timezone.now() + timedelta(seconds=max(0.0, delay - 1)),
            error_code=exc.code or (str(exc.status_code) if exc.status_code else "network"),
            message=f"{exc} (attempt {attempts} of {limit}; retrying in {delay:.0f} s)",
        )
        queueing.enqueue(submit, task.pk, delay=delay)
        return Outcome(Did.RETRYING, delay=delay)
    lifecycle.fail_task(task.pk, str(exc), exc.error_code)
    return _failed()


# -- poll ------------------------------------------------------------------------------------


def poll(task_id: int, reschedule: bool = True) -> Outcome:
    """:func:`_poll`; a task it failed (timed out, refused key, an error or answers it
    cannot read) frees its provider's slot for the oldest waiting task."""
    outcome = _poll(task_id, reschedule)
    if outcome.did is Did.FAILED:
        _left_flight(task_id)
    return outcome


def _poll(task_id: int, reschedule: bool = True) -> Outcome:
    """Read the task from its provider; finish it, or schedule the next read with backoff.

    A scheduled read that finds it is not due yet (``next_poll_at``: a second chain, e.g.
    queued by the reconciler while a long Retry-After was being waited out) does nothing,
    so one task is never read by more than one chain. ``reschedule=False`` (a webhook's
    re-read) always reads and never schedules. A task that ended meanwhile (a webhook said
    so) is left alone: whoever saw it succeed stores it (its own retries, then the
    reconciler, for images left open), not a second run downloading the same files.
    """
    task = GenerationTask.objects.filter(pk=task_id).first()
    if task is None or task.is_terminal:
        return _skipped(Why.TERMINAL)
    if not task.provider_task_id:
        return _skipped(Why.NOT_SUBMITTED)
    if (
        reschedule
        and task.next_poll_at is not None
        and timezone.now() < task.next_poll_at - timedelta(seconds=POLL_SLACK_SECONDS)
    ):
        return _skipped(Why.NOT_DUE)
    if _deadline_passed(task):
        minutes = conf.get("TASK_TIMEOUT") / 60
        message = f"The provider did not finish within {minutes:g} minutes."
        down = breaker.down_note(task.provider, breaker.display_name(task.provider))
        lifecycle.fail_task(task_id, f"{message} {down}".strip(), "timeout")
        return _failed(Why.TIMEOUT)
    try:
        with get_provider(task.provider) as provider:
            wait = breaker.admit(
                task.provider, provider.display_name, probe_seconds=provider.deadline + 30
            )
            if wait is not None:
                delay = wait.delay()
                if reschedule:
                    _schedule_poll(task_id, delay)
                return Outcome(Did.WAITING, Why.PROVIDER_DOWN, delay=delay)
            try:
                state = provider.fetch(task.provider_task_id)
            except ProviderError as exc:
                breaker.record(task.provider, exc)
                raise
            except BaseException:
                # No answer recorded: a probe it held goes to the next job.
                breaker.release_probe(task.provider)
                raise
            breaker.record(task.provider, None)
    except ImproperlyConfigured as exc:
        return _fail_unconfigured(task, exc)
    except ProviderError as exc:
        if exc.key_refused:
            lifecycle.fail_task(task_id, str(exc), "api_key")
            return _failed(Why.KEY_REFUSED)
        if exc.unexpected:
            return _unexpected_answer(task, exc, reschedule)
        if not exc.retryable:
            lifecycle.fail_task(task_id, str(exc), exc.error_code)
            return _failed()
        lifecycle.count_read(task_id)
        if reschedule:
            _schedule_poll(task_id, max(poll_delay(task.polls + 1), exc.retry_after or 0))
        return Outcome(Did.READ_FAILED, detail=str(exc))
    task = lifecycle.apply_state(task_id, state, counted_poll=True)
    _after_state(task)
    if task.status == TaskStatus.SUCCEEDED:
        return store(task_id)
    if not task.is_terminal and reschedule:
        _schedule_poll(task_id, _next_read(task))
    return Outcome(Did.READ, detail=task.status)


def _unexpected_answer(task: GenerationTask, exc: ProviderError, reschedule: bool) -> Outcome:
    """A status read got an answer that cannot be read (P6): read again later, as for a
    transient failure, until :data:`UNEXPECTED_READS` in a row; then the task fails saying
    what was unexpected (the provider's words are redacted of the API key already)."""
    reads = lifecycle.note_unexpected_read(
        task.pk,
        lambda count: (
            _("%(error)s (unexpected answer %(count)d of %(limit)d in a row)")
            % {"error": exc, "count": count, "limit": UNEXPECTED_READS}
        ),
    )
    if not reads:
        return _skipped(Why.TERMINAL)
    if reads >= UNEXPECTED_READS:
        lifecycle.fail_task(
            task.pk,
            _("Unexpected provider response: %(error)s (%(count)d reads in a row).")
            % {"error": exc, "count": reads},
            "unexpected_response",
        )
        return _failed(Why.UNEXPECTED_ANSWER)
    if reschedule:
        _schedule_poll(task.pk, poll_delay(task.polls + 1))
    return Outcome(Did.READ_FAILED, Why.UNEXPECTED_ANSWER, detail=str(exc))


def _deadline_passed(task: GenerationTask) -> bool:
    started = task.submitted_at or task.created_at
    return timezone.now() - started > timedelta(seconds=conf.get("TASK_TIMEOUT"))


def _schedule_poll(task_id: int, delay: float) -> None:
    lifecycle.schedule_read(task_id, delay)
    queueing.enqueue(poll, task_id, delay=delay)


# -- complete --------------------------------------------------------------------------------


def complete(task_id: int) -> Outcome:
    """Download, check and store every output of a succeeded task; mark missing ones filtered.

    Images are fetched and checked in parallel threads (decoding bounded by the pixel
    budget of :mod:`imagen_assets.imaging`; no database there); every file name is then
    recorded (committed) before any file is written (:mod:`imagen_assets.orphans`), and
    each row is finished with a conditional update that adopts its files' records, so a
    second concurrent run cannot store an image twice (its files are removed) and a run
    killed part-way leaves nothing the sweep cannot find.
    A transient failure (the CDN or the storage unreachable, HTTP 429 or 5xx, a DNS
    timeout) keeps the image open and queues another run, not before the host's
    ``Retry-After``, until ``TASK_TIMEOUT`` after the provider finished; a refused file
    (not an image, too large, animated, an expired URL or another HTTP 4xx) fails it at
    once.
    """
    task = GenerationTask.objects.select_related("campaign").filter(pk=task_id).first()
    if task is None or task.status != TaskStatus.SUCCEEDED:
        return _skipped(Why.NOT_SUCCEEDED)
    images = list(task.images.filter(status__in=OPEN_IMAGE_STATUSES).order_by("index"))
    if not images:
        return _skipped(Why.NOTHING_LEFT)
    outputs = [Output.from_json(output) for output in task.outputs]
    now = timezone.now()
    missing = [image.pk for image in images if image.index >= len(outputs)]
    if missing:
        lifecycle.withhold_images(
            missing,
            f"The provider returned {len(outputs)} of {task.num_images} images; this one "
            "was withheld, most likely by its safety filter.",
        )
    todo = [image for image in images if image.index < len(outputs)]
    for image in todo:
        image.campaign = task.campaign  # upload_to reads the slug; no query per thread
    provenance = _provenance(task)
    hosts = _result_hosts(task)
    # Downloads and checks in parallel threads (no database there; decoding is bounded by
    # imaging.DECODING's pixel budget); each file is then stored here, its name recorded
    # before it is written (imagen_assets.orphans).
    with ThreadPoolExecutor(max_workers=max(1, min(4, len(todo)))) as pool:
        checked = list(
            pool.map(lambda img: ingest.fetch(img, outputs[img.index].url, hosts, provenance), todo)
        )
    results = ingest.keep_all(list(zip(todo, checked, strict=True)))
    del checked  # the bytes: only the stored names are needed from here
    stored = retrying = 0
    retry_after = 0.0
    # A transient failure (network, storage) leaves the image open and tries again later,
    # until TASK_TIMEOUT after the provider finished: the image is paid for.
    finished_at = task.completed_at or now
    give_up = now - finished_at > timedelta(seconds=conf.get("TASK_TIMEOUT"))
    pending = list(zip(todo, results, strict=True))
    try:
        while pending:
            image, result = pending[0]
            output = outputs[image.index]
            if isinstance(result, NotStored):
                if result.transient and not give_up:
                    retrying += lifecycle.note_image_retry(
                        image.pk, f"{result.error} Trying again shortly."
                    )
                    retry_after = max(retry_after, result.retry_after or 0.0)
                else:
                    lifecycle.finish_image(
                        image.pk, source_url=output.url, nsfw=output.nsfw, error=result.error
                    )
            else:
                try:
                    won = lifecycle.finish_image(
                        image.pk, source_url=output.url, nsfw=output.nsfw, stored=result
                    )
                except orphans.FilesSwept as exc:
                    logger.error("Task %s: %s; storing it again", task_id, exc)
                    won = False
                    retrying += lifecycle.note_image_retry(
                        image.pk, _("Storing the image took too long. Trying again shortly.")
                    )
                if won:
                    stored += 1
                else:
                    ingest.discard(result)
            pending.pop(0)
    finally:
        # Recording failed part-way (the database went away): the files nobody recorded
        # go, and the image stays open for the next run.
        for _image, result in pending:
            if not isinstance(result, NotStored):
                ingest.discard(result)
    logger.info("Task %s: stored %d image(s), %d withheld", task_id, stored, len(missing))
    if retrying:
        elapsed = (now - finished_at).total_seconds()
        # Never before the result host's Retry-After (a 429 asking for longer than one
        # run may wait), at most until the deadline.
        delay = max(min(60.0, max(5.0, elapsed / 4)), retry_after)
        left = conf.get("TASK_TIMEOUT") - elapsed
        queueing.enqueue(complete, task_id, delay=max(5.0, min(delay, left + 1)))
    return Outcome(Did.STORED, stored=stored, withheld=len(missing), retrying=retrying)


def _result_hosts(task: GenerationTask) -> ResultHosts:
    """Where the task's provider serves its results (row D1). A provider no longer in the
    settings trusts no host: its images fail naming the setting to fix."""
    try:
        with get_provider(task.provider) as provider:
            return provider.result_hosts()
    except ImproperlyConfigured:
        return ResultHosts.of(
            (), f"IMAGEN_ASSETS['PROVIDERS'][{task.provider!r}]['OPTIONS']['RESULT_HOSTS']"
        )


def _provenance(task: GenerationTask) -> Provenance:
    """What each clean file says made it: the task's model, and its provider by name."""
    try:
        provider = get_provider_class(task.provider).display_name
    except ImproperlyConfigured:
        provider = task.provider
    return Provenance(model=task.model, provider=str(provider))


# -- webhooks --------------------------------------------------------------------------------


def process_webhook(event_id: int) -> Outcome:
    """Act on a recorded webhook: apply a signed state, or re-read a hinted task; and,
    from threads of this job (:func:`in_threads`), on the other webhooks recorded and not
    yet taken by a job. A batch's tasks finish together and their callbacks arrive
    together: one job stores them all at once instead of each waiting its turn. Each event
    is claimed first (a conditional update with a lease), so the job queued for another
    one it took finds it taken and does nothing."""
    limit = int(conf.get("JOB_THREADS")) - 1
    others: list[int] = []
    if limit > 0:
        others = list(
            WebhookEvent.objects.filter(processed_at__isnull=True, received_at__lte=timezone.now())
            .filter(_unclaimed(timezone.now()))
            .exclude(pk=event_id)
            .order_by("received_at")
            .values_list("pk", flat=True)[:limit]
        )

    def run(pk: int) -> Outcome:
        try:
            return _process_claimed(pk)
        except Exception:
            # Not processed: free for its own job, a later batch or the reconciler.
            WebhookEvent.objects.filter(pk=pk).update(claimed_until=None)
            raise

    return in_threads(run, [event_id, *others])[0]


def _unclaimed(now: datetime) -> Q:
    """Webhook events no job holds at ``now`` (never claimed, or the claim lapsed)."""
    return Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)


def _process_claimed(event_id: int) -> Outcome:
    """:func:`_process_event` once this run holds the event's claim."""
    now = timezone.now()
    claimed = (
        WebhookEvent.objects.filter(pk=event_id, processed_at__isnull=True)
        .filter(_unclaimed(now))
        .update(claimed_until=now + timedelta(seconds=WEBHOOK_CLAIM_SECONDS))
    )
    if not claimed:
        return _skipped(Why.PROCESSED)  # done, or another job is at it
    return _process_event(event_id)


def _process_event(event_id: int) -> Outcome:
    event = WebhookEvent.objects.filter(pk=event_id).first()
    if event is None or event.processed_at:
        return _skipped(Why.PROCESSED)
    # By id, not ``event.task``: the column has no database constraint (W13), so a task
    # deleted while the webhook was being recorded leaves an id with no row behind.
    task = (GenerationTask.objects.filter(pk=event.task_id).first() if event.task_id else None) or (
        GenerationTask.objects.filter(
            provider=event.provider, provider_task_id=event.provider_task_id
        ).first()
        if event.provider_task_id
        else None
    )
    age = (timezone.now() - event.received_at).total_seconds()
    if task is None or not task.provider_task_id:
        if age < ORPHAN_GRACE_SECONDS:
            delay = 2 + age / 4
            # Claimed until its own retry is due: other jobs' batches leave it alone.
            until = timezone.now() + timedelta(seconds=max(0.0, delay - POLL_SLACK_SECONDS))
            WebhookEvent.objects.filter(pk=event_id).update(claimed_until=until)
            queueing.enqueue(process_webhook, event_id, delay=delay, timeout=conf.BATCH_JOB_TIMEOUT)
            return Outcome(Did.WAITING)
        outcome = Outcome(Did.ORPHANED)
        WebhookEvent.objects.filter(pk=event_id).update(
            processed_at=timezone.now(), outcome=str(outcome)
        )
        logger.warning(
            "Webhook %s names unknown %s task %r",
            event.event_id,
            event.provider,
            event.provider_task_id,
        )
        return outcome
    if event.state:
        state = ProviderTask.from_json(event.state)
        before = task.status_enum
        task = lifecycle.apply_state(task.pk, state, counted_poll=False)
        if before.terminal or task.status != state.status:
            outcome = Outcome(Did.IGNORED, detail=f"{state.status}: the task was already {before}")
        else:
            outcome = Outcome(Did.APPLIED, detail=state.status)
        if not before.terminal:
            _after_state(task)
        if task.status == TaskStatus.SUCCEEDED and before != TaskStatus.SUCCEEDED:
            # Only the event that made it succeed stores it (a re-sent callback does not).
            outcome = Outcome(outcome.did, detail=outcome.detail, then=store(task.pk))
    else:
        outcome = Outcome(Did.REREAD, then=poll(task.pk, reschedule=False))
    WebhookEvent.objects.filter(pk=event_id).update(
        processed_at=timezone.now(), outcome=str(outcome)[:200], task=task
    )
    return outcome


# -- reconcile -------------------------------------------------------------------------------


def reconcile(reschedule: bool = False, lost_before: float | None = None) -> dict[str, int]:
    """Find rows stuck in a non-terminal state and queue the job that moves them on.

    Safe to run at any time and as often as wanted: every job it queues is idempotent.
    With ``reschedule`` it queues its own next run (:func:`queueing.schedule_reconciler`).

    ``lost_before`` (a Unix time; :func:`queueing.restore_lost_jobs` passes the time Redis
    started without its data) restores instead: every open row last changed before then
    lost its job, so it gets it again, a submit retry or a status read at the time it was
    due (so the read is not refused as early), anything else at once.
    """
    now = timezone.now()
    restoring = lost_before is not None
    if lost_before is not None:
        stale = datetime.fromtimestamp(lost_before, tz=UTC)
    else:
        stale = now - timedelta(seconds=conf.get("RECONCILE_AFTER"))
    counts = {"submit": 0, "poll": 0, "complete": 0, "webhook": 0, "sweep": 0}
    to_submit = GenerationTask.objects.filter(
        status=TaskStatus.QUEUED, provider_task_id="", updated_at__lt=stale
    )
    if not restoring:
        to_submit = to_submit.filter(
            Q(submit_lease_until__isnull=True) | Q(submit_lease_until__lt=now)
        )
    aliases = set(to_submit.values_list("provider", flat=True).distinct())
    capped = {alias for alias in aliases if capacity.cap_of(alias) is not None}
    # A capped provider's tasks not yet sent wait for a slot (below); one whose call was
    # cut short needs no slot (it is counted in flight) but its outcome settled.
    direct = to_submit.exclude(provider__in=capped, submit_started_at__isnull=True)
    for task_id, lease in direct.values_list("pk", "submit_lease_until"):
        counts["submit"] += queueing.enqueue(submit, task_id, delay=_due_in(lease, now))
    for alias in sorted(capped):
        # Tasks waiting for a slot: as many as are free now, oldest first (a wake lost).
        waiting = capacity.waiting_to_send(alias)
        counts["submit"] += len(waiting) if queue_submits(waiting) else 0
    to_poll = GenerationTask.objects.filter(
        status__in=IN_FLIGHT_TASK_STATUSES, updated_at__lt=stale
    ).exclude(provider_task_id="")
    if not restoring:
        # A read still scheduled (e.g. waiting out a long Retry-After) is not stuck.
        to_poll = to_poll.filter(Q(next_poll_at__isnull=True) | Q(next_poll_at__lt=now))
    for task_id, due in to_poll.values_list("pk", "next_poll_at"):
        counts["poll"] += queueing.enqueue(poll, task_id, delay=_due_in(due, now))
    to_complete = GenerationTask.objects.filter(
        status=TaskStatus.SUCCEEDED,
        images__status__in=OPEN_IMAGE_STATUSES,
        images__updated_at__lt=stale,
    ).distinct()
    for task_id in to_complete.values_list("pk", flat=True):
        counts["complete"] += queueing.enqueue(complete, task_id)
    events = WebhookEvent.objects.filter(processed_at__isnull=True, received_at__lt=stale)
    for event_id in events.values_list("pk", flat=True):
        counts["webhook"] += queueing.enqueue(
            process_webhook, event_id, timeout=conf.BATCH_JOB_TIMEOUT
        )
    # Files a dead run left behind: swept by a job of their own, so a slow storage never
    # holds up the repairs above.
    counts["sweep"] = int(orphans.due() and queueing.enqueue(sweep_files))
    if any(counts.values()):
        logger.info("Reconciler %s %s", "restored" if restoring else "queued", counts)
    if reschedule:
        queueing.schedule_reconciler()
    return counts


# -- orphan files ----------------------------------------------------------------------------


def sweep_files() -> dict[str, int]:
    """Delete the files no image owns whose records are past ``ORPHAN_GRACE`` (written by
    runs that died or could not clean up; :mod:`imagen_assets.orphans`). Returns how many
    records ended each way: deleted, owned (file kept), failed (tried again next time)."""
    counts = {action.value: 0 for action in orphans.Action if action != orphans.Action.WOULD_DELETE}
    for swept in orphans.sweep():
        counts[swept.action.value] += 1
    if counts["failed"]:
        logger.warning("Sweep: %d orphan file(s) could not be deleted", counts["failed"])
    return counts


def _due_in(when: datetime | None, now: datetime) -> float | None:
    """Seconds from ``now`` until ``when``; None (at once) when that is not in the future."""
    if when is None or when <= now:
        return None
    return (when - now).total_seconds()


#: The jobs (submit, poll, complete, process_webhook, reconcile, sweep_files) and the
#: outcome types they return.
__all__ = [
    "Did",
    "Outcome",
    "Why",
    "complete",
    "poll",
    "process_webhook",
    "reconcile",
    "submit",
    "sweep_files",
]
