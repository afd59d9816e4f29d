"""The one setting, ``IMAGEN_ASSETS``, read lazily on every access.

Nothing here is cached, so ``override_settings(IMAGEN_ASSETS=...)`` works everywhere, and
nothing is read at import time.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # Alias (a key of PROVIDERS) used when a request names no provider.
    "DEFAULT_PROVIDER": "sandbox",
    # alias -> {"BACKEND": dotted path, "OPTIONS": {...}}, like STORAGES / CACHES.
    "PROVIDERS": {},
    # Public origin the providers call back, e.g. "https://marketing.example.com".
    # None means no callbacks are requested: completion is found by polling alone.
    "WEBHOOK_BASE_URL": None,
    # django-rq queue the jobs run on.
    "QUEUE": "default",
    # Alias in settings.STORAGES that image files are written to.
    "STORAGE": "default",
    # Folder (key prefix) inside that storage.
    "UPLOAD_PREFIX": "imagen",
    # Downloads of provider outputs.
    "DOWNLOAD_ALLOW_HOSTS": [],
    "DOWNLOAD_MAX_BYTES": 40 * 1024 * 1024,
    "DOWNLOAD_TIMEOUT": 60.0,
    # Largest image (in pixels) that will be decoded, and the pixels one worker decodes at
    # once: 2**23 (8.4 Mpx), 1.8x Imagen 4's largest output (2560x1792, 4.6 Mpx).
    "MAX_IMAGE_PIXELS": 8_388_608,
    "THUMBNAIL_SIZE": 400,
    # Provider HTTP calls.
    "HTTP_TIMEOUT": 30.0,
    # Total seconds for one provider API call, however slowly the answer arrives.
    "HTTP_DEADLINE": 60.0,
    "SUBMIT_MAX_ATTEMPTS": 6,
    # One request's tasks are sent this many at once, from threads of one job.
    "JOB_THREADS": 8,
    # ... and at most this many of a process's threads store results (download, check,
    # write) at once: each may hold a storage client and decoded pixels.
    "STORE_THREADS": 3,
    # Circuit breaker per provider: opened after this many transient failures in a row
    # (no answer, 5xx); while open, jobs wait BREAKER_COOLDOWN seconds, then one probes.
    "BREAKER_THRESHOLD": 5,
    "BREAKER_COOLDOWN": 60.0,
    # Polling (imagen_assets/latency.py): the first status read when the task is expected
    # to be done (the median of the provider's recent tasks; POLL_EXPECTED_SECONDS until
    # three have finished), then every POLL_INTERVAL s while it is about due, then
    # (POLL_BACKOFF - 1) x the time it is overdue, at most POLL_MAX_INTERVAL.
    "POLL_EXPECTED_SECONDS": 6.0,
    "POLL_INTERVAL": 0.5,
    "POLL_BACKOFF": 1.5,
    "POLL_MAX_INTERVAL": 30.0,
    # A task the provider has not finished after this many seconds is failed.
    "TASK_TIMEOUT": 15 * 60,
    # Rows untouched for this long in a non-terminal state are repaired by the reconciler.
    "RECONCILE_AFTER": 120,
    "RECONCILE_INTERVAL": 60,
    # A file written by a run that never recorded it on an image (the worker died, the
    # database went away) is deleted by the sweep once its record is this many seconds
    # old: longer than any complete() run can take (the queue's job timeout).
    "ORPHAN_GRACE": 3600,
    # Webhooks.
    "WEBHOOK_MAX_BODY": 256 * 1024,
    "WEBHOOK_TOLERANCE": 300,
    # Seconds after a task finished during which its callbacks are still recorded (late
    # ones are normal: a poll often finishes a task just before its webhook arrives).
    # Later ones are answered 200 and dropped: a finished task cannot change.
    "WEBHOOK_ACCEPT_AFTER_FINISH": 60 * 60,
    # Most webhook events recorded for one task (a callback URL's token cannot fill the
    # table); a provider sends one to four (the terminal event, redeliveries, a late one).
    "WEBHOOK_MAX_EVENTS_PER_TASK": 10,
    # Largest number of images one request (admin form or CLI) may ask for.
    "MAX_IMAGES_PER_REQUEST": 100,
    # Per-user daily quotas, across all campaigns (a day is the site's TIME_ZONE day; failed
    # and cancelled tasks do not count). None: no limit. A UserQuota row in the admin
    # overrides either for one user. Images: a whole number; spend: dollars, e.g. "25.00".
    "USER_DAILY_IMAGES": None,
    "USER_DAILY_SPEND": None,
    # Largest number of images one batch (prompts x aspect ratios x count, admin or
    # ``imagen_generate --from-csv``) may ask for; each line still at most the above.
    "MAX_IMAGES_PER_BATCH": 500,
    # E-mail about the approval workflow (imagen_assets.notifications), sent by RQ jobs.
    "NOTIFICATIONS": True,
    # The site's public address, e.g. "https://marketing.example.com", for links sent out
    # (mail, outside reviewers' links; not WEBHOOK_BASE_URL, which may be an origin only
    # providers reach). None: mail says "open the admin" without a link (check W004),
    # outside links are site-relative.
    "SITE_URL": None,
}


#: RQ's time limit for a job that handles several tasks from threads (submit_many,
#: poll_many, process_webhook): up to JOB_THREADS results stored STORE_THREADS at a time,
#: each download within its own deadline. ORPHAN_GRACE must outlast it (check E010).
BATCH_JOB_TIMEOUT = 600


def get(name: str) -> Any:
    """Return the current value of one ``IMAGEN_ASSETS`` key (or its default)."""
    if name not in DEFAULTS:
        raise KeyError(f"Unknown IMAGEN_ASSETS key {name!r}")
    user = getattr(settings, "IMAGEN_ASSETS", {}) or {}
    return user.get(name, DEFAULTS[name])


def user_settings() -> dict[str, Any]:
    return dict(getattr(settings, "IMAGEN_ASSETS", {}) or {})


def site_link(path: str) -> str | None:
    """``path`` on the site's public address (``SITE_URL``), or None when it is unset."""
    base = get("SITE_URL")
    return f"{str(base).rstrip('/')}{path}" if base else None
