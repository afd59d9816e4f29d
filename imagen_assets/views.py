"""The webhook endpoint: verify, record, queue, answer 2xx fast.

It never calls a provider for the status and never downloads: the work happens in
:func:`imagen_assets.jobs.process_webhook`. Bad input is always a 4xx with no state change.
"""

from __future__ import annotations

import logging

from django.core.exceptions import ImproperlyConfigured
from django.db import DataError, IntegrityError, OperationalError, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from imagen_assets import conf, jobs, queueing
from imagen_assets.models import GenerationTask, WebhookEvent
from imagen_assets.providers import ProviderError, WebhookError, get_provider

logger = logging.getLogger(__name__)


def _refuse(message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def _read_body(request: HttpRequest, limit: int) -> bytes | None:
    """The raw body, or None if it is larger than ``limit`` (checked before reading it all)."""
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if declared.isdigit() and int(declared) > limit:
        return None
    body = request.read(limit + 1)
    return None if len(body) > limit else body


@csrf_exempt
@require_POST
def webhook(request: HttpRequest, provider: str, token: str | None = None) -> JsonResponse:
    """Receive one callback. The error contract, decided here and nowhere else: what the
    sender got wrong (unknown URL, bad signature, malformed or oversized body) is a 4xx
    with nothing recorded; what we cannot do right now (fetch a signing secret, reach the
    database) is a 503 so the provider retries; anything accepted is recorded once and
    answered 200, duplicates included."""
    try:
        backend = get_provider(provider)
    except ImproperlyConfigured:
        return _refuse("unknown provider", 404)
    with backend:
        task = None
        if token is not None:
            task = (
                GenerationTask.objects.filter(provider=provider, callback_token=token)
                .only("pk", "provider_task_id")
                .first()
            )
        try:
            backend.check_callback_url(None if token is None else task is not None)
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

    try:
        with transaction.atomic():
            event = WebhookEvent.objects.create(
                provider=provider,
                event_id=notice.event_id[:200],
                provider_task_id=(notice.task_id or getattr(task, "provider_task_id", ""))[:200],
                task_id=task.pk if task is not None else None,
                payload=dict(notice.payload),
                state=notice.task.to_json() if notice.task is not None else None,
            )
            transaction.on_commit(lambda: queueing.enqueue(jobs.process_webhook, event.pk))
    except IntegrityError:
        return JsonResponse({"ok": True, "duplicate": True})
    except DataError as exc:  # e.g. a value too long for its column: the sender's fault
        logger.warning("Refused a %s webhook the database cannot store: %s", provider, exc)
        return _refuse("webhook holds data that cannot be stored", 400)
    except OperationalError:
        logger.exception("Could not record a %s webhook", provider)
        return _refuse("cannot record webhooks right now", 503)
    return JsonResponse({"ok": True})
