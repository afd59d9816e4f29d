"""System checks for ``IMAGEN_ASSETS``; each id is stable and listed in the README."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from imagen_assets import conf

ID = "imagen_assets."


@checks.register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from imagen_assets.providers import WebhookAuth, get_provider

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
        with provider:
            missing = provider.missing_options()
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
