"""The webhook endpoint: verify, record, queue, answer 2xx fast.

It never calls a provider for the status and never downloads: the work happens in
:func:`imagen_assets.jobs.process_webhook`. Bad input is always a 4xx with no state change.
It never waits on a task's row either (docs/reliability.md W13): it only reads tasks (plain
reads wait for no lock) and inserts the event, whose task column has no database
constraint to check.

A task's callbacks do not go on for ever: once it finished ``WEBHOOK_ACCEPT_AFTER_FINISH``
seconds ago, or once ``WEBHOOK_MAX_EVENTS_PER_TASK`` events name it, further callbacks are
answered 200 and dropped. 200, not 410 or another 4xx, on purpose (docs/providers.md §2.7:
WaveSpeed redelivers when an endpoint "errors"; §1.6: Wave's retries are unknown): a
finished task is final, so such a callback can change nothing, and a 2xx is the one answer
every sender takes as "stop". Under the Standard Webhooks convention that WaveSpeed's
headers copy, a 410 asks the sender to disable the endpoint, which for WaveSpeed is the
one shared URL of every task.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from datetime import timedelta

from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ImproperlyConfigured
from django.db import (
    DataError,
    IntegrityError,
    OperationalError,
    connections,
    router,
    transaction,
)
from django.db.models import Field, Model
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from imagen_assets import conf, jobs, queueing
from imagen_assets.models import MAX_ID_LENGTH, GenerationTask, WebhookEvent
from imagen_assets.providers import ProviderError, WebhookError, WebhookNotice, get_provider
from imagen_assets.status import TaskStatus

logger = logging.getLogger(__name__)

#: What the endpoint reads of a task: enough to file the event and to decide whether the
#: task still takes callbacks (:func:`_find_task`).
_TASK_FIELDS = ("id", "provider_task_id", "status", "completed_at", "updated_at")


#: :func:`_find_task`'s query: the task, and how many events name it, counted up to a limit.
_TASK_SQL = (
    "SELECT {columns}, (SELECT COUNT(*) FROM ("
    "SELECT 1 FROM {events} e WHERE e.{event_task} = t.{pk} LIMIT %s) counted"
    ") AS recorded_events "
    "FROM {tasks} t WHERE t.{provider} = %s AND t.{key} = %s ORDER BY t.{pk} LIMIT 1"
)


@functools.cache
def _task_sql(alias: str, vendor: str, key: str) -> str:
    """:data:`_TASK_SQL` for database ``alias`` (``vendor``: its kind, part of the cache's
    key as quoting depends on it). Only the models' table and column names, quoted, go
    into the text; every value is a parameter."""
    quote = connections[alias].ops.quote_name

    def column(model: type[Model], name: str) -> str:
        field = model._meta.get_field(name)
        assert isinstance(field, Field) and field.column
        return quote(field.column)

    return _TASK_SQL.format(
        columns=", ".join(f"t.{column(GenerationTask, name)}" for name in _TASK_FIELDS),
        events=quote(WebhookEvent._meta.db_table),
        event_task=column(WebhookEvent, "task"),
        tasks=quote(GenerationTask._meta.db_table),
        pk=column(GenerationTask, "id"),
        provider=column(GenerationTask, "provider"),
        key=column(GenerationTask, key),
    )


def _find_task(provider: str, key: str, value: str) -> GenerationTask | None:
    """``provider``'s task whose ``key`` (``provider_task_id`` or ``callback_token``) is
    ``value``, with only :data:`_TASK_FIELDS` read and, in the same query, how many events
    name it, counted up to ``WEBHOOK_MAX_EVENTS_PER_TASK`` (``recorded_events``).

    SQL written once rather than built by the ORM for every callback: building the two
    queries this replaces (the task, then its events) was a third of what a webhook cost
    the web server (benchmarks.webhooks)."""
    alias = router.db_for_read(GenerationTask)
    sql = _task_sql(alias, connections[alias].vendor, key)
    limit = conf.get("WEBHOOK_MAX_EVENTS_PER_TASK")
    found = list(GenerationTask.objects.raw(sql, [limit, provider, value]).using(alias))
    return found[0] if found else None


def _refuse(message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def _read_body(request: HttpRequest, limit: int) -> bytes | None:
    """The raw body, or None if it is larger than ``limit`` (checked before reading it all)."""
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if declared.isdigit() and int(declared) > limit:
        return None
    body = request.read(limit + 1)
    return None if len(body) > limit else body


def _closed_to_callbacks(task: GenerationTask | None) -> str | None:
    """Why ``task`` takes no more callbacks, or None when it still does.

    The count is a bound, not an exact quota: deliveries arriving at the same moment may
    each see one slot left, so a task ends with at most the limit plus the deliveries in
    flight at that moment.
    """
    if task is None:
        return None
    if TaskStatus(task.status).terminal:
        finished = task.completed_at or task.updated_at
        after = timedelta(seconds=conf.get("WEBHOOK_ACCEPT_AFTER_FINISH"))
        if finished is not None and timezone.now() - finished > after:
            return "the task finished long ago"
    recorded: int = task.recorded_events  # type: ignore[attr-defined]  # read by _find_task
    if recorded >= conf.get("WEBHOOK_MAX_EVENTS_PER_TASK"):
        return "the task has had all the callbacks it may have"
    return None


def _dropped(provider: str, task: GenerationTask, reason: str) -> JsonResponse:
    logger.info("Dropped a %s callback for task %s: %s", provider, task.pk, reason)
    return JsonResponse({"ok": True, "ignored": reason})


def _too_long(notice: WebhookNotice) -> str | None:
    """Which id of ``notice`` is too long to store whole, if one is (W5: never cut short)."""
    if len(notice.event_id) > MAX_ID_LENGTH:
        return "webhook id"
    if len(notice.task_id) > MAX_ID_LENGTH:
        return "task id"
    return None


@login_not_required  # providers have no session: LoginRequiredMiddleware must let them in
@csrf_exempt
@require_POST
def webhook(request: HttpRequest, provider: str, token: str | None = None) -> JsonResponse:
    """Receive one callback. The error contract, decided here and nowhere else: what the
    sender got wrong (unknown URL, bad signature, malformed or oversized body, an id too
    long to store) is a 4xx with nothing recorded; what we cannot do right now (fetch a
    signing secret, reach the database) is a 503 so the provider retries; a callback for a
    task closed to callbacks is answered 200 and dropped; anything accepted is recorded
    once and answered 200, duplicates included."""
    try:
        backend = get_provider(provider)
    except ImproperlyConfigured:
        return _refuse("unknown provider", 404)
    with backend:
        task = None
        try:
            if token is not None:
                task = _find_task(provider, "callback_token", token)
            closed = _closed_to_callbacks(task)
        except OperationalError:
            logger.exception("Could not look up the task of a %s webhook", provider)
            return _refuse("cannot record webhooks right now", 503)
        try:
            backend.check_callback_url(None if token is None else task is not None)
            if task is not None and closed:
                return _dropped(provider, task, closed)
            body = _read_body(request, conf.get("WEBHOOK_MAX_BODY"))
            if body is None:
                return _refuse("body too large", 413)
            notice = backend.receive_webhook(
                request.headers,
                body,
                expected_task_id=task.provider_task_id if task is not None else "",
            )
        except WebhookError as exc:
            # The sender's event id (W7), repr'd and cut short: it is outside input.
            event_id = request.headers.get("webhook-id", "")[:100]
            logger.warning("Refused a %s webhook (id %r): %s", provider, event_id, exc.message)
            return _refuse(exc.message, exc.status_code)
        except ProviderError as exc:
            # We could not get the secret to check it with: ask the sender to retry later.
            logger.error("Cannot verify %s webhooks now: %s", provider, exc)
            return _refuse("cannot verify webhooks right now", 503)

    too_long = _too_long(notice)
    if too_long:
        logger.warning("Refused a %s webhook: its %s is too long to store", provider, too_long)
        return _refuse(f"{too_long} longer than {MAX_ID_LENGTH} characters", 400)
    try:
        if task is None and notice.task_id:
            task = _find_task(provider, "provider_task_id", notice.task_id)
            closed = _closed_to_callbacks(task)
            if task is not None and closed:
                return _dropped(provider, task, closed)
        # Outside a transaction (the usual case: autocommit) the INSERT is one on its own,
        # and a duplicate's IntegrityError leaves nothing to roll back: no BEGIN and COMMIT
        # (two more round trips). Inside one (ATOMIC_REQUESTS, a test's), a savepoint, so
        # that a duplicate does not break the enclosing transaction.
        alias = router.db_for_write(WebhookEvent)
        in_transaction = transaction.get_connection(alias).in_atomic_block
        with transaction.atomic(alias) if in_transaction else contextlib.nullcontext():
            event = WebhookEvent.objects.create(
                provider=provider,
                event_id=notice.event_id,
                provider_task_id=notice.task_id or getattr(task, "provider_task_id", ""),
                task_id=task.pk if task is not None else None,
                payload=dict(notice.payload),
                state=notice.task.to_json() if notice.task is not None else None,
            )
            transaction.on_commit(
                lambda: queueing.enqueue(
                    jobs.process_webhook, event.pk, timeout=conf.BATCH_JOB_TIMEOUT
                )
            )
    except IntegrityError:
        return JsonResponse({"ok": True, "duplicate": True})
    except DataError as exc:  # e.g. a value too long for its column: the sender's fault
        logger.warning("Refused a %s webhook the database cannot store: %s", provider, exc)
        return _refuse("webhook holds data that cannot be stored", 400)
    except OperationalError:
        logger.exception("Could not record a %s webhook", provider)
        return _refuse("cannot record webhooks right now", 503)
    return JsonResponse({"ok": True})
