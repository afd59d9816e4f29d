"""System checks for ``IMAGEN_ASSETS``; each id is stable and listed in the README."""

from __future__ import annotations

import math
from datetime import date
from typing import Any
from urllib.parse import urlsplit

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext as _

from imagen_assets import conf, hosts

ID = "imagen_assets."

#: Shortest webhook signing key accepted (check E031): a secret's bytes after its
#: ``whsec_`` prefix, which is what the HMAC is keyed with (docs/providers.md §2.7).
MIN_WEBHOOK_SECRET_BYTES = 24
#: Settings that must be a positive number of seconds (check E032).
POSITIVE_SECONDS = (
    "HTTP_TIMEOUT",
    "HTTP_DEADLINE",
    "BREAKER_COOLDOWN",
    "POLL_EXPECTED_SECONDS",
    "POLL_INTERVAL",
    "POLL_MAX_INTERVAL",
)


@checks.register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from imagen_assets.providers import WebhookAuth, get_provider, served_by_sandbox

    errors: list[checks.CheckMessage] = []
    user = conf.user_settings()
    for key in sorted(set(user) - set(conf.DEFAULTS)):
        errors.append(
            checks.Error(
                f"IMAGEN_ASSETS has an unknown key {key!r}.",
                hint=f"Known keys: {', '.join(sorted(conf.DEFAULTS))}.",
                id=ID + "E006",
            )
        )
    if not apps.is_installed("django_rq"):
        errors.append(
            checks.Error(
                "imagen_assets queues its work with django-rq, which is not installed.",
                hint="Add 'django_rq' to INSTALLED_APPS and configure RQ_QUEUES.",
                id=ID + "E003",
            )
        )
    queue = conf.get("QUEUE")
    if queue not in getattr(settings, "RQ_QUEUES", {}):
        errors.append(
            checks.Error(
                f"IMAGEN_ASSETS['QUEUE'] is {queue!r}, which is not in RQ_QUEUES.",
                hint="Add that queue to RQ_QUEUES or set QUEUE to one that exists.",
                id=ID + "E004",
            )
        )
    errors.extend(_check_orphan_grace(queue))
    storage = conf.get("STORAGE")
    if storage not in settings.STORAGES:
        errors.append(
            checks.Error(
                f"IMAGEN_ASSETS['STORAGE'] is {storage!r}, which is not in STORAGES.",
                hint="Name a storage alias from STORAGES (e.g. 'default').",
                id=ID + "E005",
            )
        )

    default = conf.get("DEFAULT_PROVIDER")
    providers = conf.get("PROVIDERS")
    if default not in providers:
        errors.append(
            checks.Error(
                f"IMAGEN_ASSETS['DEFAULT_PROVIDER'] is {default!r}, which is not configured "
                "in IMAGEN_ASSETS['PROVIDERS'].",
                hint=f"Configured providers: {', '.join(sorted(providers)) or 'none'}.",
                id=ID + "E002",
            )
        )
    webhooks_on = bool(conf.get("WEBHOOK_BASE_URL"))
    for alias in providers:
        try:
            provider = get_provider(alias)
        except ImproperlyConfigured as exc:
            errors.append(
                checks.Error(
                    f"Provider {alias!r} cannot be loaded: {exc}",
                    hint="Check BACKEND (a dotted path to a Provider subclass) and OPTIONS.",
                    id=ID + "E001",
                )
            )
            continue
        errors.extend(_provider_values(alias, provider.options))
        with provider:
            missing = provider.missing_options()
            if not missing and not served_by_sandbox(alias):
                # Only a provider that can be used (one missing its key has W001/E007), and
                # not one the sandbox stands in for (the demo's): it serves any model.
                errors.extend(_retired_model(alias, provider))
            if missing:
                message = f"Provider {alias!r} is missing {', '.join(missing)} and cannot be used."
                hint = (
                    f"Set IMAGEN_ASSETS['PROVIDERS'][{alias!r}]['OPTIONS'] "
                    f"{', '.join(missing)} (the example site reads "
                    f"IMAGEN_{alias.upper()}_API_KEY)."
                )
                if alias == default:
                    errors.append(checks.Error(message, hint=hint, id=ID + "E007"))
                else:
                    errors.append(checks.Warning(message, hint=hint, id=ID + "W001"))
            if (
                webhooks_on
                and provider.webhook_auth is WebhookAuth.SIGNATURE
                and "WEBHOOK_SECRET" in provider.option_names
                and not provider.local_only
                and not provider.options.get("WEBHOOK_SECRET")
                and not missing
            ):
                errors.append(
                    checks.Warning(
                        f"Webhooks are on but provider {alias!r} has no WEBHOOK_SECRET.",
                        hint=(
                            "Set OPTIONS['WEBHOOK_SECRET'] (for WaveSpeed, the whsec_ value "
                            "from its dashboard); without it the secret is fetched from the "
                            "provider's API when first needed."
                        ),
                        id=ID + "W002",
                    )
                )
    if webhooks_on:
        parts = urlsplit(conf.get("WEBHOOK_BASE_URL"))
        if parts.scheme not in ("http", "https") or not parts.netloc:
            errors.append(
                checks.Error(
                    "IMAGEN_ASSETS['WEBHOOK_BASE_URL'] must be an absolute http(s) origin.",
                    hint="For example 'https://marketing.example.com'.",
                    id=ID + "E008",
                )
            )
        elif parts.scheme != "https" and parts.hostname not in ("127.0.0.1", "localhost"):
            errors.append(
                checks.Warning(
                    "IMAGEN_ASSETS['WEBHOOK_BASE_URL'] is not HTTPS; providers may refuse it "
                    "and callbacks would travel in clear text.",
                    hint="Use the site's public https:// origin.",
                    id=ID + "W003",
                )
            )
    errors.extend(_check_webhook_limits())
    errors.extend(_limits())
    if conf.get("NOTIFICATIONS") and not conf.get("SITE_URL"):
        errors.append(
            checks.Warning(
                "Notifications are on but IMAGEN_ASSETS['SITE_URL'] is not set; e-mail will "
                "say 'open the admin' without a link.",
                hint=(
                    "Set SITE_URL to the site's public address, e.g. "
                    "'https://marketing.example.com', or NOTIFICATIONS to False."
                ),
                id=ID + "W004",
            )
        )
    return errors


def _retired_model(alias: str, provider: Any) -> list[checks.CheckMessage]:
    """W040: the provider's ``MODEL`` is one it no longer serves (:mod:`.retired_models`)."""
    from imagen_assets.retired_models import retired

    row = retired(type(provider), provider.model)
    if row is None:
        return []
    when = row.retired_on.isoformat()
    tense = "retired" if row.retired_on <= date.today() else "retires"
    switch = (
        f"switch to {row.replacement!r}"
        if row.replacement
        else "switch to a model the provider still lists (none is confirmed in the table)"
    )
    return [
        checks.Warning(
            f"Provider {alias!r} uses model {row.model!r}, which {row.provider_name} "
            f"{tense} on {when}: its tasks fail. {row.note}".strip(),
            hint=(
                f"Set IMAGEN_ASSETS['PROVIDERS'][{alias!r}]['OPTIONS']['MODEL'] to another "
                f"model ({switch}) or remove the provider; to keep it knowingly, add "
                f"'{ID}W040' to SILENCED_SYSTEM_CHECKS. Source: {row.source}."
            ),
            id=ID + "W040",
        )
    ]


def _positive_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _limits() -> list[checks.CheckMessage]:
    """E030, E032 and E033: limits that must be positive numbers. A wrong type here is not a
    nuisance but a failure of every image (``MAX_IMAGE_PIXELS=None`` made each decode raise
    a TypeError that was retried until the task's deadline)."""
    errors: list[checks.CheckMessage] = []
    pixels = conf.get("MAX_IMAGE_PIXELS")
    if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels <= 0:
        errors.append(
            checks.Error(
                f"IMAGEN_ASSETS['MAX_IMAGE_PIXELS'] must be a positive whole number, not "
                f"{pixels!r}.",
                hint=(
                    "Images larger than this are refused before decoding, and one worker "
                    "decodes no more pixels at once; leave it out for the default, 8388608, "
                    "1.8 times Imagen 4's largest output. It cannot be off."
                ),
                id=ID + "E030",
            )
        )
    threshold = conf.get("BREAKER_THRESHOLD")
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        errors.append(
            checks.Error(
                f"IMAGEN_ASSETS['BREAKER_THRESHOLD'] must be a whole number of at least 1, not "
                f"{threshold!r}.",
                hint=(
                    "How many failed calls in a row make a provider count as down; leave it "
                    f"out for the default ({conf.DEFAULTS['BREAKER_THRESHOLD']})."
                ),
                id=ID + "E033",
            )
        )
    errors.extend(_batch_limit())
    for key in POSITIVE_SECONDS:
        value = conf.get(key)
        if not _positive_number(value):
            errors.append(
                checks.Error(
                    f"IMAGEN_ASSETS[{key!r}] must be a positive number of seconds, not {value!r}.",
                    hint=f"Leave it out for the default ({conf.DEFAULTS[key]:g} s).",
                    id=ID + "E032",
                )
            )
    return errors


def _batch_limit() -> list[checks.CheckMessage]:
    """W080: ``MAX_IMAGES_PER_BATCH`` a whole number of at least ``MAX_IMAGES_PER_REQUEST``
    (else one line of a batch could ask for more than the batch may hold). A warning: the
    batch pages then refuse every batch, saying so; nothing else breaks."""
    batch = conf.get("MAX_IMAGES_PER_BATCH")
    single = conf.get("MAX_IMAGES_PER_REQUEST")
    whole = isinstance(batch, int) and not isinstance(batch, bool)
    if whole and isinstance(single, int) and batch >= single:
        return []
    return [
        checks.Warning(
            f"IMAGEN_ASSETS['MAX_IMAGES_PER_BATCH'] must be a whole number of at least "
            f"MAX_IMAGES_PER_REQUEST ({single!r}), not {batch!r}.",
            hint=(
                "The most images one batch (prompts x aspect ratios x count) may ask for; "
                f"leave it out for the default ({conf.DEFAULTS['MAX_IMAGES_PER_BATCH']})."
            ),
            id=ID + "W080",
        )
    ]


def _provider_values(alias: str, options: dict[str, Any]) -> list[checks.CheckMessage]:
    """E031 (a webhook secret too short to sign with), E032 (a provider's TIMEOUT or
    DEADLINE that is not a positive number) and E037 (a MAX_CONCURRENCY that is not a whole
    number of at least 1). Never repeats a secret."""
    errors: list[checks.CheckMessage] = []
    where = f"IMAGEN_ASSETS['PROVIDERS'][{alias!r}]['OPTIONS']"
    for key in ("TIMEOUT", "DEADLINE"):
        value = options.get(key)
        if value is not None and not _positive_number(value):
            errors.append(
                checks.Error(
                    f"{where}[{key!r}] must be a positive number of seconds.",
                    hint="Leave it out to use IMAGEN_ASSETS['HTTP_TIMEOUT'] / ['HTTP_DEADLINE'].",
                    id=ID + "E032",
                )
            )
    cap = options.get("MAX_CONCURRENCY")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        errors.append(
            checks.Error(
                f"{where}['MAX_CONCURRENCY'] must be a whole number of at least 1, not {cap!r}.",
                hint=(
                    "The most tasks this provider may run at once for your account (WaveSpeed: "
                    "2 at Bronze, 300 at Silver); leave it out for no cap."
                ),
                id=ID + "E037",
            )
        )
    errors.extend(_result_hosts(where, options.get("RESULT_HOSTS")))
    configured = options.get("WEBHOOK_SECRET")
    secrets = [configured] if isinstance(configured, str) else list(configured or [])
    for position, secret in enumerate(secrets):
        if not isinstance(secret, str) or not secret.strip():
            continue  # a wrong type is E001's; empty means "fetch it" (W002)
        key_bytes = len(secret.strip().removeprefix("whsec_").encode())
        if key_bytes < MIN_WEBHOOK_SECRET_BYTES:
            which = f"[{position}]" if not isinstance(configured, str) else ""
            errors.append(
                checks.Error(
                    f"{where}['WEBHOOK_SECRET']{which} is too short to sign webhooks with: "
                    f"{key_bytes} bytes after its whsec_ prefix, fewer than "
                    f"{MIN_WEBHOOK_SECRET_BYTES}. Anyone could forge a webhook by guessing it.",
                    hint=(
                        "Copy the whole secret from the provider's dashboard (WaveSpeed: "
                        "whsec_ followed by a long random string), or leave it empty to "
                        "have it fetched from the provider's API."
                    ),
                    id=ID + "E031",
                )
            )
    return errors


def _result_hosts(where: str, value: Any) -> list[checks.CheckMessage]:
    """E036 (RESULT_HOSTS is not a list of host patterns) and W007 (it allows any host)."""
    if value is None:
        return []
    setting = f"{where}['RESULT_HOSTS']"
    hint = _(
        "List host names ('cdn.example.com'), domains with their subdomains "
        "('.example.com'), subdomains only ('*.example.com') or IP addresses; no scheme, "
        "port or path."
    )
    if isinstance(value, str) or not isinstance(value, list | tuple):
        return [
            checks.Error(
                _("%(setting)s must be a list of host patterns.") % {"setting": setting},
                hint=hint,
                id=ID + "E036",
            )
        ]
    found: list[checks.CheckMessage] = []
    for position, pattern in enumerate(value):
        wrong = hosts.problem(pattern)
        if wrong:
            found.append(
                checks.Error(
                    _("%(setting)s[%(position)d] is not a host pattern: %(problem)s.")
                    % {"setting": setting, "position": position, "problem": wrong},
                    hint=hint,
                    id=ID + "E036",
                )
            )
    if hosts.ANY in value:
        found.append(
            checks.Warning(
                _(
                    "%(setting)s allows any host: result URLs (from the provider's answers "
                    "and webhooks) may point anywhere public."
                )
                % {"setting": setting},
                hint=_("List the hosts the provider serves its results from instead."),
                id=ID + "W007",
            )
        )
    return found


#: RQ's job timeout when the queue names none.
RQ_DEFAULT_TIMEOUT = 180


def _check_orphan_grace(queue: str) -> list[checks.CheckMessage]:
    """E010: the sweep must not delete files a run of ``complete()`` is still writing, so
    ``ORPHAN_GRACE`` must outlast the queue's job timeout (RQ kills a job at that age)."""
    grace = conf.get("ORPHAN_GRACE")
    config = getattr(settings, "RQ_QUEUES", {}).get(queue) or {}
    timeout = config.get("DEFAULT_TIMEOUT") or RQ_DEFAULT_TIMEOUT
    if isinstance(timeout, int | float):  # the jobs of several tasks may run this long
        timeout = max(timeout, conf.BATCH_JOB_TIMEOUT)
    number = isinstance(grace, int | float) and not isinstance(grace, bool)
    if number and grace > 0 and (not isinstance(timeout, int | float) or grace > timeout):
        return []
    return [
        checks.Error(
            f"IMAGEN_ASSETS['ORPHAN_GRACE'] is {grace!r}; it must be a number of seconds "
            f"longer than the job timeout of the queue {queue!r} ({timeout} s).",
            hint=(
                "The sweep deletes files no image owns once their record is that old; a "
                "shorter grace could delete the files of a run still storing them. The "
                "default is 3600."
            ),
            id=ID + "E010",
        )
    ]


@checks.register(checks.Tags.security)
def check_originals_private(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W005: the originals' storage must not be publicly reachable (docs/workflow.md,
    "Access to files"): unapproved originals are served only by the permission-checked
    view."""
    from django.core.files.storage import InvalidStorageError, storages

    from imagen_assets.files import public_reason

    alias = conf.get("STORAGE")
    try:
        storage = storages[alias]
    except InvalidStorageError:
        return []  # E005 says so
    reason = public_reason(storage)
    if reason is None:
        return []
    return [
        checks.Warning(
            f"The images' storage {alias!r} is publicly reachable: {reason}. Anyone with a "
            "file's address can open originals nobody approved.",
            hint=(
                "Point IMAGEN_ASSETS['STORAGE'] at a private STORAGES alias: a "
                "FileSystemStorage whose location is outside MEDIA_ROOT, or S3 with "
                "querystring_auth on. The app serves the files through its own views."
            ),
            id=ID + "W005",
        )
    ]


def _check_webhook_limits() -> list[checks.CheckMessage]:
    """E009: the bounds on one task's callbacks must be numbers that bound something."""
    errors: list[checks.CheckMessage] = []
    after = conf.get("WEBHOOK_ACCEPT_AFTER_FINISH")
    if isinstance(after, bool) or not isinstance(after, int | float) or not after >= 0:
        errors.append(
            checks.Error(
                "IMAGEN_ASSETS['WEBHOOK_ACCEPT_AFTER_FINISH'] must be a number of seconds, "
                f"0 or more, not {after!r}.",
                hint="For example 3600: a task's callbacks are recorded for an hour after "
                "it finished.",
                id=ID + "E009",
            )
        )
    most = conf.get("WEBHOOK_MAX_EVENTS_PER_TASK")
    if isinstance(most, bool) or not isinstance(most, int) or most < 1:
        errors.append(
            checks.Error(
                "IMAGEN_ASSETS['WEBHOOK_MAX_EVENTS_PER_TASK'] must be a whole number, 1 or "
                f"more, not {most!r}.",
                hint="For example 10; a provider sends one to four callbacks per task.",
                id=ID + "E009",
            )
        )
    return errors


@checks.register()
def check_redis_keeps_jobs(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W020: a Redis that evicts keys under memory pressure drops queued jobs, the RQ
    scheduler's lock and the markers the app keeps (docs/reliability.md, Q14). Nothing is
    said when Redis cannot be reached: that is not a setting."""
    from imagen_assets import queueing

    if conf.get("QUEUE") not in getattr(settings, "RQ_QUEUES", {}):
        return []  # E004 says so
    policy = queueing.eviction_policy()
    if policy is None or policy == "noeviction":
        return []
    return [
        checks.Warning(
            f"The Redis of queue {conf.get('QUEUE')!r} has maxmemory-policy {policy!r}: when "
            "full it deletes keys, such as queued jobs and the scheduler's lock, instead of "
            "refusing new ones. Work is then delayed until the reconciler finds it.",
            hint=(
                "Set maxmemory-policy noeviction (redis.conf, or CONFIG SET "
                "maxmemory-policy noeviction then CONFIG REWRITE), as RQ requires."
            ),
            id=ID + "W020",
        )
    ]


@checks.register()
def check_user_quotas(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E090/E091: the site's per-user daily quotas are None or an amount of at least zero.
    A request refuses to run on an invalid one rather than treat it as "no limit"."""
    from imagen_assets import quotas

    errors: list[checks.CheckMessage] = []
    images = conf.get("USER_DAILY_IMAGES")
    try:
        quotas.parse_images(images)
    except ValueError:
        errors.append(
            checks.Error(
                f"IMAGEN_ASSETS['USER_DAILY_IMAGES'] is {images!r}, not a whole number of "
                "images of at least 0.",
                hint="Set it to None (no limit) or a number such as 50.",
                id=ID + "E090",
            )
        )
    spend = conf.get("USER_DAILY_SPEND")
    try:
        quotas.parse_spend(spend)
    except ValueError:
        errors.append(
            checks.Error(
                f"IMAGEN_ASSETS['USER_DAILY_SPEND'] is {spend!r}, not an amount of dollars of "
                "at least 0.",
                hint='Set it to None (no limit) or an amount such as "25.00".',
                id=ID + "E091",
            )
        )
    return errors
