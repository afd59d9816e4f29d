"""The RQ jobs: submit, poll, complete, process a webhook, reconcile.

Rules every job here keeps (DESIGN.md): it takes primitive ids and reloads the row; it is
safe to run twice or concurrently; the provider task id is saved before anything else; a
status never moves backwards; no job sleeps waiting for a provider — a poll that finds the
task still running schedules another poll and exits.
"""

from __future__ import annotations

import logging
import random
import secrets
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone
from redis.exceptions import RedisError
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus, get_current_job

from imagen_assets import conf, queueing
from imagen_assets.downloads import DownloadError, download
from imagen_assets.imaging import CheckedImage, ImageRejected, check_image
from imagen_assets.models import GeneratedImage, GenerationTask, WebhookEvent, image_storage
from imagen_assets.providers import (
    GenerationParams,
    Output,
    Provider,
    ProviderError,
    ProviderTask,
    TaskStatus,
    get_provider,
)

logger = logging.getLogger(__name__)

OPEN_TASK_STATUSES = [s.value for s in TaskStatus if not s.terminal]
OPEN_IMAGE_STATUSES = [s.value for s in GeneratedImage.OPEN_STATUSES]
# How long a webhook for a task we cannot find yet is retried before it is filed as orphaned
# (the provider may answer before our submit transaction commits).
ORPHAN_GRACE_SECONDS = 60


# -- helpers ---------------------------------------------------------------------------------


def backoff_delay(attempt: int, retry_after: float | None = None) -> float:
    """Full-jitter exponential backoff (up to 2, 4, 8 ... s, at most 5 min), never before
    the provider's Retry-After."""
    delay = random.uniform(1.0, min(300.0, 2.0 * 2 ** max(attempt - 1, 0)))
    return max(delay, retry_after or 0.0)


# A scheduled read may start this much before the time it was scheduled for.
POLL_SLACK_SECONDS = 0.5


def poll_delay(polls: int) -> float:
    base = conf.get("POLL_INTERVAL") * conf.get("POLL_BACKOFF") ** polls
    return float(min(base, conf.get("POLL_MAX_INTERVAL")))


def callback_url(task: GenerationTask, provider: Provider) -> str | None:
    """The URL the provider should call for this task, or None when webhooks are off."""
    base = conf.get("WEBHOOK_BASE_URL")
    if not base:
        return None
    if provider.callback_needs_token:
        path = reverse(
            "imagen_assets:webhook_token",
            kwargs={"provider": task.provider, "token": task.callback_token},
        )
    else:
        path = reverse("imagen_assets:webhook", kwargs={"provider": task.provider})
    return base.rstrip("/") + path


def _redact(url: str | None, task: GenerationTask) -> str | None:
    return url.replace(task.callback_token, "<token>") if url else url


def _fail_task(task_id: int, message: str, code: str = "", *, cancelled: bool = False) -> None:
    """Move a task and its open images to failed (or cancelled), keeping the reason."""
    now = timezone.now()
    status = TaskStatus.CANCELLED if cancelled else TaskStatus.FAILED
    with transaction.atomic():
        updated = GenerationTask.objects.filter(pk=task_id, status__in=OPEN_TASK_STATUSES).update(
            status=status,
            error_message=message,
            error_code=code,
            completed_at=now,
            submit_lease_until=None,
            submit_started_at=None,
            next_poll_at=None,
            cost=Decimal(0),
            updated_at=now,
        )
        if updated:
            GeneratedImage.objects.filter(task_id=task_id, status__in=OPEN_IMAGE_STATUSES).update(
                status=GeneratedImage.Status.CANCELLED
                if cancelled
                else GeneratedImage.Status.FAILED,
                error_message=message,
                updated_at=now,
            )
    if updated:
        logger.warning("Task %s %s: %s", task_id, status, message)


def _params(task: GenerationTask) -> GenerationParams:
    return GenerationParams(
        prompt=task.prompt,
        aspect_ratio=task.aspect_ratio,
        num_images=task.num_images,
        seed=task.seed,
        negative_prompt=task.negative_prompt,
    )


# -- submit ----------------------------------------------------------------------------------


def submit(task_id: int) -> str:
    """Hand one task to its provider, exactly once, and save the provider's task id.

    A claim (a conditional UPDATE with a lease) makes a second concurrent run a no-op; the
    lease outlasts the provider call, and the id is saved only under the same claim, so a
    run that lost its claim cannot move the task. Only 429, 5xx and network errors are
    retried, later, with backoff; anything else fails the task with the provider's own
    message. An attempt that stopped mid-call (a crashed or killed worker) is not repeated
    for a provider without idempotency: it may have been billed, so the task fails.
    """
    task = (
        GenerationTask.objects.filter(pk=task_id)
        .only("provider", "status", "provider_task_id")
        .first()
    )
    if task is None or task.status != TaskStatus.QUEUED or task.provider_task_id:
        return "skipped: already submitted or being submitted"
    try:
        provider = get_provider(task.provider)
    except ImproperlyConfigured as exc:
        _fail_task(task_id, f"Provider {task.provider!r} is not configured: {exc}", "config")
        return "failed: configuration"
    with provider:
        now = timezone.now()
        # Connect, send and read may each take the full timeout; then some slack.
        lease = now + timedelta(seconds=4 * provider.timeout + 30)
        claimed = (
            GenerationTask.objects.filter(pk=task_id, status=TaskStatus.QUEUED, provider_task_id="")
            .filter(Q(submit_lease_until__isnull=True) | Q(submit_lease_until__lt=now))
            .update(submit_lease_until=lease, attempts=F("attempts") + 1, updated_at=now)
        )
        if not claimed:
            return "skipped: already submitted or being submitted"
        task = GenerationTask.objects.get(pk=task_id)
        refused = _refuse_attempt(task, provider)
        if refused:
            return refused
        url = callback_url(task, provider)
        params = _params(task)
        try:
            body = provider.request_body(params, callback_url=_redact(url, task))
        except ValueError as exc:  # settings changed since the request was validated
            _fail_task(
                task_id, f"{provider.display_name} cannot take this request: {exc}", "invalid"
            )
            return "failed: invalid request"
        if url and provider.signs_webhooks:
            # Fetch (and cache) the webhook secret now, so the webhook view has it. A
            # failure is not fatal: the view fetches it itself, and polling still works.
            try:
                getattr(provider, "webhook_secrets", lambda: None)()
            except ProviderError as exc:
                logger.warning("Could not fetch the %s webhook secret: %s", task.provider, exc)
        # From here until the outcome is known, a crash leaves the attempt marked.
        GenerationTask.objects.filter(pk=task_id, submit_lease_until=lease).update(
            submit_started_at=timezone.now()
        )
        try:
            result = provider.submit(
                params, idempotency_key=str(task.idempotency_key), callback_url=url
            )
        except ProviderError as exc:
            return _submit_failed(task, exc, idempotent=provider.idempotent_submit)
    # The provider task id goes to the database before anything else can happen, and only
    # while this run still holds its claim.
    delay = poll_delay(0)
    saved = GenerationTask.objects.filter(
        pk=task_id, status=TaskStatus.QUEUED, provider_task_id="", submit_lease_until=lease
    ).update(
        provider_task_id=result.task_id,
        status=TaskStatus.SUBMITTED,
        submitted_at=timezone.now(),
        submit_lease_until=None,
        submit_started_at=None,
        next_poll_at=timezone.now() + timedelta(seconds=delay),
        request_body=body,
        error_message="",
        error_code="",
        updated_at=timezone.now(),
    )
    if not saved:
        logger.error(
            "Task %s: its submit claim was lost (lease expired or the task was failed) before "
            "%s answered; provider task %s is an orphan",
            task_id,
            task.provider,
            result.task_id,
        )
        return "skipped: claim lost; provider task orphaned"
    logger.info("Task %s submitted to %s as %s", task_id, task.provider, result.task_id)
    if result.status.rank > TaskStatus.SUBMITTED.rank:
        _apply(task_id, result, counted_poll=False)
        if result.status == TaskStatus.SUCCEEDED:
            complete(task_id)
            return "completed at submit"
    queueing.enqueue(poll, task_id, delay=delay)
    return f"submitted as {result.task_id}"


def _refuse_attempt(task: GenerationTask, provider: Provider) -> str:
    """Fail the task instead of this attempt when repeating would be unsafe or endless."""
    if task.submit_started_at is not None and not provider.idempotent_submit:
        _fail_ambiguous(
            task.pk,
            f"An earlier attempt to submit to {provider.display_name} stopped without an "
            "answer (the worker was stopped or crashed)",
        )
        return "failed: interrupted submit"
    limit = conf.get("SUBMIT_MAX_ATTEMPTS")
    if task.attempts > limit:
        _fail_task(
            task.pk,
            f"Gave up after {limit} attempts to submit to {provider.display_name}.",
            "attempts",
        )
        return "failed: too many attempts"
    return ""


def _fail_ambiguous(task_id: int, what_happened: str) -> None:
    """Fail a submit whose outcome is unknown, for a provider that cannot take it twice."""
    _fail_task(
        task_id,
        f"{what_happened}. The request may or may not have reached the provider, which "
        "offers no way to submit safely twice; it was not retried. Check the provider's "
        "dashboard before generating again.",
        "ambiguous",
    )


def _submit_failed(task: GenerationTask, exc: ProviderError, *, idempotent: bool) -> str:
    attempts = task.attempts
    limit = conf.get("SUBMIT_MAX_ATTEMPTS")
    if exc.ambiguous and not idempotent:
        # The provider may have started (and will bill) the task; without an idempotency
        # key a second submit could pay twice, so a person decides.
        _fail_ambiguous(task.pk, str(exc))
        return "failed: ambiguous submit"
    if exc.retryable and attempts < limit:
        delay = backoff_delay(attempts, exc.retry_after)
        GenerationTask.objects.filter(pk=task.pk, provider_task_id="").update(
            # Held until the retry is due, so neither the reconciler nor another run
            # submits earlier than the provider asked (Retry-After).
            submit_lease_until=timezone.now() + timedelta(seconds=max(0.0, delay - 1)),
            submit_started_at=None,  # the provider answered: the outcome is known
            error_code=exc.code or (str(exc.status_code) if exc.status_code else "network"),
            error_message=f"{exc} (attempt {attempts} of {limit}; retrying in {delay:.0f} s)",
            updated_at=timezone.now(),
        )
        queueing.enqueue(submit, task.pk, delay=delay)
        return f"retrying in {delay:.1f} s"
    _fail_task(task.pk, str(exc), exc.code or str(exc.status_code or ""))
    return "failed"


# -- state changes ---------------------------------------------------------------------------


def _apply(task_id: int, state: ProviderTask, *, counted_poll: bool) -> GenerationTask:
    """Record what the provider said, only ever moving forward. Returns the saved task."""
    now = timezone.now()
    with transaction.atomic():
        task = GenerationTask.objects.select_for_update().get(pk=task_id)
        if counted_poll:
            task.polls += 1
        current = task.status_enum
        if current.terminal or state.status.rank < current.rank:
            # A late or out-of-order report: nothing to learn but the read count.
            task.save(update_fields=["polls", "updated_at"])
            return task
        if state.progress is not None:
            task.progress = max(task.progress, min(100, max(0, state.progress)))
        task.status = state.status
        if state.status == TaskStatus.SUCCEEDED:
            task.progress = 100
            task.completed_at = now
            task.outputs = [asdict(output) for output in state.outputs]
            if state.cost is not None:
                task.cost = state.cost
            else:
                per_image = task.estimated_cost / task.num_images if task.num_images else 0
                task.cost = Decimal(per_image) * min(len(state.outputs), task.num_images)
        elif state.status in (TaskStatus.FAILED, TaskStatus.CANCELLED):
            task.completed_at = now
            task.cost = state.cost or Decimal(0)
            task.error_code = state.error_code
            task.error_message = state.error_message or (
                "The provider cancelled the task."
                if state.status == TaskStatus.CANCELLED
                else "The provider reported a failure without a message."
            )
        task.save()
        images = GeneratedImage.objects.filter(task_id=task_id, status__in=OPEN_IMAGE_STATUSES)
        if state.status == TaskStatus.PROCESSING:
            images.filter(status=GeneratedImage.Status.QUEUED).update(
                status=GeneratedImage.Status.PROCESSING, updated_at=now
            )
        elif state.status in (TaskStatus.FAILED, TaskStatus.CANCELLED):
            images.update(
                status=(
                    GeneratedImage.Status.FAILED
                    if state.status == TaskStatus.FAILED
                    else GeneratedImage.Status.CANCELLED
                ),
                error_message=task.error_message,
                updated_at=now,
            )
    return task


def _deadline_passed(task: GenerationTask) -> bool:
    started = task.submitted_at or task.created_at
    return timezone.now() - started > timedelta(seconds=conf.get("TASK_TIMEOUT"))


# -- poll ------------------------------------------------------------------------------------


def poll(task_id: int, reschedule: bool = True) -> str:
    """Read the task from its provider; finish it, or schedule the next read with backoff.

    A scheduled read that finds it is not due yet (``next_poll_at``: a second chain, e.g.
    queued by the reconciler while a long Retry-After was being waited out) does nothing,
    so one task is never read by more than one chain. ``reschedule=False`` (a webhook's
    re-read) always reads and never schedules.
    """
    task = GenerationTask.objects.filter(pk=task_id).first()
    if task is None or task.is_terminal:
        if task is not None and task.status == TaskStatus.SUCCEEDED:
            return complete(task_id)
        return "skipped: terminal"
    if not task.provider_task_id:
        return "skipped: not submitted yet"
    if (
        reschedule
        and task.next_poll_at is not None
        and timezone.now() < task.next_poll_at - timedelta(seconds=POLL_SLACK_SECONDS)
    ):
        return "skipped: next read not due yet"
    if _deadline_passed(task):
        minutes = conf.get("TASK_TIMEOUT") / 60
        _fail_task(task_id, f"The provider did not finish within {minutes:g} minutes.", "timeout")
        return "failed: timeout"
    try:
        with get_provider(task.provider) as provider:
            state = provider.fetch(task.provider_task_id)
    except ImproperlyConfigured as exc:
        _fail_task(task_id, f"Provider {task.provider!r} is not configured: {exc}", "config")
        return "failed: configuration"
    except ProviderError as exc:
        if not exc.retryable:
            _fail_task(task_id, str(exc), exc.code or str(exc.status_code or ""))
            return "failed"
        GenerationTask.objects.filter(pk=task_id).update(
            polls=F("polls") + 1, updated_at=timezone.now()
        )
        if reschedule:
            _schedule_poll(task_id, max(poll_delay(task.polls + 1), exc.retry_after or 0))
        return f"read failed, retrying: {exc}"
    task = _apply(task_id, state, counted_poll=True)
    if task.status == TaskStatus.SUCCEEDED:
        return complete(task_id)
    if not task.is_terminal and reschedule:
        _schedule_poll(task_id, poll_delay(task.polls))
    return f"status {task.status}"


def _schedule_poll(task_id: int, delay: float) -> None:
    GenerationTask.objects.filter(pk=task_id).update(
        next_poll_at=timezone.now() + timedelta(seconds=delay)
    )
    queueing.enqueue(poll, task_id, delay=delay)


# -- complete --------------------------------------------------------------------------------


def _fetch_and_check(url: str) -> CheckedImage:
    """Download one output and validate it; transient network failures are tried twice."""
    for attempt in (1, 2):
        try:
            downloaded = download(
                url,
                max_bytes=conf.get("DOWNLOAD_MAX_BYTES"),
                timeout=conf.get("DOWNLOAD_TIMEOUT"),
                allow_hosts=conf.get("DOWNLOAD_ALLOW_HOSTS"),
            )
            break
        except DownloadError as exc:
            if attempt == 2 or not exc.transient:
                raise
    return check_image(
        downloaded.content,
        max_pixels=conf.get("MAX_IMAGE_PIXELS"),
        thumbnail_size=conf.get("THUMBNAIL_SIZE"),
    )


def _store(image: GeneratedImage, checked: CheckedImage) -> tuple[str, str]:
    """Write the original bytes and the thumbnail; returns the two storage names."""
    storage = image_storage()
    # A random part: two runs racing on one image (webhook and poll) never write the same
    # name, so the loser deletes only its own copy, also on storages that overwrite (S3).
    stem = f"{image.task_id}-{image.index}-{checked.sha256[:12]}-{secrets.token_hex(3)}"
    file_field = GeneratedImage._meta.get_field("file")
    thumb_field = GeneratedImage._meta.get_field("thumbnail")
    name = storage.save(
        file_field.generate_filename(image, f"{stem}.{checked.extension}"),
        ContentFile(checked.content),
    )
    thumb = storage.save(
        thumb_field.generate_filename(image, f"{stem}.jpg"), ContentFile(checked.thumbnail)
    )
    return name, thumb


def _download_one(image: GeneratedImage, output: dict[str, Any]) -> dict[str, Any]:
    """Fetch, check and store one image (runs in a thread: no database access here)."""
    try:
        checked = _fetch_and_check(output["url"])
        name, thumb = _store(image, checked)
    except DownloadError as exc:
        return {"error": f"Could not store the image: {exc}", "transient": exc.transient}
    except ImageRejected as exc:
        return {"error": f"Could not store the image: {exc}", "transient": False}
    except Exception as exc:  # storage backends raise their own types: a full disk, S3 down
        logger.exception("Storing image %s failed", image.pk)
        return {"error": f"Could not store the image ({type(exc).__name__}).", "transient": True}
    return {
        "file": name,
        "thumbnail": thumb,
        "width": checked.width,
        "height": checked.height,
        "bytes": len(checked.content),
        "sha256": checked.sha256,
        "content_type": checked.content_type,
    }


def complete(task_id: int) -> str:
    """Download, check and store every output of a succeeded task; mark missing ones filtered.

    Images are fetched in parallel threads; each row is then finished with a conditional
    update, so a second concurrent run cannot store an image twice (its files are removed).
    A transient failure (the CDN or the storage unreachable) keeps the image open and queues
    another run, until ``TASK_TIMEOUT`` after the provider finished; a refused file (not an
    image, too large, an HTTP 4xx) fails it at once.
    """
    task = GenerationTask.objects.select_related("campaign").filter(pk=task_id).first()
    if task is None or task.status != TaskStatus.SUCCEEDED:
        return "skipped: task has not succeeded"
    images = list(task.images.filter(status__in=OPEN_IMAGE_STATUSES).order_by("index"))
    if not images:
        return "skipped: nothing left to store"
    outputs = [Output(**o) for o in task.outputs]
    now = timezone.now()
    missing = [image.pk for image in images if image.index >= len(outputs)]
    if missing:
        GeneratedImage.objects.filter(pk__in=missing, status__in=OPEN_IMAGE_STATUSES).update(
            status=GeneratedImage.Status.FILTERED,
            error_message=(
                f"The provider returned {len(outputs)} of {task.num_images} images; this one "
                "was withheld, most likely by its safety filter. It was not charged."
            ),
            completed_at=now,
            updated_at=now,
        )
    todo = [image for image in images if image.index < len(outputs)]
    for image in todo:
        image.campaign = task.campaign  # upload_to reads the slug; no query per thread
    with ThreadPoolExecutor(max_workers=max(1, min(4, len(todo)))) as pool:
        results = list(pool.map(lambda img: _download_one(img, asdict(outputs[img.index])), todo))
    stored = retrying = 0
    # A transient failure (network, storage) leaves the image open and tries again later,
    # until TASK_TIMEOUT after the provider finished: the image is paid for.
    finished_at = task.completed_at or now
    give_up = now - finished_at > timedelta(seconds=conf.get("TASK_TIMEOUT"))
    for image, result in zip(todo, results, strict=True):
        output = outputs[image.index]
        fields: dict[str, Any] = {
            "source_url": output.url[:2000],
            "nsfw": output.nsfw,
            "completed_at": timezone.now(),
            "updated_at": timezone.now(),
        }
        if "error" in result and result["transient"] and not give_up:
            retrying += GeneratedImage.objects.filter(
                pk=image.pk, status__in=OPEN_IMAGE_STATUSES
            ).update(
                error_message=f"{result['error']} Trying again shortly.",
                updated_at=timezone.now(),
            )
            continue
        if "error" in result:
            fields.update(status=GeneratedImage.Status.FAILED, error_message=result["error"])
        else:
            fields.update(status=GeneratedImage.Status.SUCCEEDED, error_message="", **result)
        won = GeneratedImage.objects.filter(pk=image.pk, status__in=OPEN_IMAGE_STATUSES).update(
            **fields
        )
        if not won and "file" in result:
            storage = image_storage()
            storage.delete(result["file"])
            storage.delete(result["thumbnail"])
        stored += bool(won and "file" in result)
    logger.info("Task %s: stored %d image(s), %d withheld", task_id, stored, len(missing))
    if retrying:
        elapsed = (now - finished_at).total_seconds()
        queueing.enqueue(complete, task_id, delay=min(60.0, max(5.0, elapsed / 4)))
        return f"stored {stored}, withheld {len(missing)}, retrying {retrying}"
    return f"stored {stored}, withheld {len(missing)}"


# -- webhooks --------------------------------------------------------------------------------


def process_webhook(event_id: int) -> str:
    """Act on a recorded webhook: apply a signed state, or re-read a hinted task."""
    event = WebhookEvent.objects.filter(pk=event_id).first()
    if event is None or event.processed_at:
        return "skipped: processed"
    task = event.task or (
        GenerationTask.objects.filter(
            provider=event.provider, provider_task_id=event.provider_task_id
        ).first()
        if event.provider_task_id
        else None
    )
    age = (timezone.now() - event.received_at).total_seconds()
    if task is None or not task.provider_task_id:
        if age < ORPHAN_GRACE_SECONDS:
            queueing.enqueue(process_webhook, event_id, delay=2 + age / 4)
            return "waiting for the task to be saved"
        WebhookEvent.objects.filter(pk=event_id).update(
            processed_at=timezone.now(), outcome="orphaned: no task with this id"
        )
        logger.warning(
            "Webhook %s names unknown %s task %r",
            event.event_id,
            event.provider,
            event.provider_task_id,
        )
        return "orphaned"
    if event.state:
        state = ProviderTask(
            task_id=event.state["task_id"],
            status=TaskStatus(event.state["status"]),
            progress=event.state.get("progress"),
            outputs=tuple(Output(**o) for o in event.state.get("outputs", [])),
            error_code=event.state.get("error_code", ""),
            error_message=event.state.get("error_message", ""),
            cost=Decimal(event.state["cost"]) if event.state.get("cost") is not None else None,
        )
        before = task.status_enum
        task = _apply(task.pk, state, counted_poll=False)
        if before.terminal or task.status != state.status:
            outcome = f"ignored {state.status}: the task was already {before}"
        else:
            outcome = f"applied {state.status}"
        if task.status == TaskStatus.SUCCEEDED:
            outcome += "; " + complete(task.pk)
    else:
        outcome = "re-read: " + poll(task.pk, reschedule=False)
    WebhookEvent.objects.filter(pk=event_id).update(
        processed_at=timezone.now(), outcome=outcome[:200], task=task
    )
    return outcome


# -- reconcile -------------------------------------------------------------------------------


def reconcile(reschedule: bool = False) -> dict[str, int]:
    """Find rows stuck in a non-terminal state and queue the job that moves them on.

    Safe to run at any time and as often as wanted: every job it queues is idempotent.
    With ``reschedule`` it queues its own next run (a single chain, by fixed job id).
    """
    now = timezone.now()
    stale = now - timedelta(seconds=conf.get("RECONCILE_AFTER"))
    counts = {"submit": 0, "poll": 0, "complete": 0, "webhook": 0}
    to_submit = GenerationTask.objects.filter(
        status=TaskStatus.QUEUED, provider_task_id="", updated_at__lt=stale
    ).filter(Q(submit_lease_until__isnull=True) | Q(submit_lease_until__lt=now))
    for task_id in to_submit.values_list("pk", flat=True):
        counts["submit"] += queueing.enqueue(submit, task_id)
    to_poll = (
        GenerationTask.objects.filter(
            status__in=[TaskStatus.SUBMITTED, TaskStatus.PROCESSING], updated_at__lt=stale
        )
        .exclude(provider_task_id="")
        # A read still scheduled (e.g. waiting out a long Retry-After) is not stuck.
        .filter(Q(next_poll_at__isnull=True) | Q(next_poll_at__lt=now))
    )
    for task_id in to_poll.values_list("pk", flat=True):
        counts["poll"] += queueing.enqueue(poll, task_id)
    to_complete = GenerationTask.objects.filter(
        status=TaskStatus.SUCCEEDED,
        images__status__in=OPEN_IMAGE_STATUSES,
        images__updated_at__lt=stale,
    ).distinct()
    for task_id in to_complete.values_list("pk", flat=True):
        counts["complete"] += queueing.enqueue(complete, task_id)
    events = WebhookEvent.objects.filter(processed_at__isnull=True, received_at__lt=stale)
    for event_id in events.values_list("pk", flat=True):
        counts["webhook"] += queueing.enqueue(process_webhook, event_id)
    if any(counts.values()):
        logger.info("Reconciler queued %s", counts)
    if reschedule:
        schedule_reconciler()
    return counts


def schedule_reconciler() -> bool:
    """Queue the reconciler's next run, ``RECONCILE_INTERVAL`` seconds from now, unless
    one is already on its way. False if nothing was queued.

    The runs form one chain: each run queues the next under a fresh job id and records
    that id in Redis. Whoever else asks (``imagen_reconcile --schedule``, every
    maintenance run of :class:`imagen_assets.worker.Worker`) queues nothing while the
    recorded run is scheduled, queued or running, so the chain starts again after Redis
    lost it and is never doubled; should two chains still start at the same moment, the
    one no longer recorded ends at its next run.
    """
    queue = queueing.get_queue()
    try:
        if _reconcile_pending(queue):
            return False
        job_id = f"{queueing.RECONCILE_JOB_PREFIX}{uuid.uuid4().hex}"
        queued = queueing.enqueue(
            reconcile, True, delay=conf.get("RECONCILE_INTERVAL"), job_id=job_id
        )
        if queued:
            queue.connection.set(queueing.RECONCILE_NEXT_KEY, job_id)
    except RedisError as exc:
        logger.error("Could not schedule the reconciler (%s)", type(exc).__name__)
        return False
    return queued


def reconciler_scheduled() -> bool:
    """Whether the reconciler's next run is scheduled, queued or running."""
    try:
        return _reconcile_pending(queueing.get_queue())
    except RedisError:
        return False


def _reconcile_pending(queue: Queue) -> bool:
    job_id = queue.connection.get(queueing.RECONCILE_NEXT_KEY)
    if not job_id:
        return False
    job_id = job_id.decode() if isinstance(job_id, bytes) else str(job_id)
    current = get_current_job()
    if current is not None and current.id == job_id:
        return False  # the recorded run is asking for its successor
    try:
        status = Job.fetch(job_id, connection=queue.connection).get_status()
    except NoSuchJobError:
        return False
    return status in (
        JobStatus.SCHEDULED,
        JobStatus.QUEUED,
        JobStatus.STARTED,
        JobStatus.DEFERRED,
    )
