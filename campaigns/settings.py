"""Settings of the example site, every value from the environment (see README)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    return env(name, "1" if default else "0").strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", True)
# Checks an operator silences on purpose, e.g. imagen_assets.W040 (a retired model kept).
SILENCED_SYSTEM_CHECKS = env_list("SILENCED_SYSTEM_CHECKS")
SECRET_KEY = env("SECRET_KEY") or (
    "django-insecure-example-site-only" if DEBUG else ""  # a real deployment sets its own
)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_rq",
    "imagen_assets",
]
if env("IMAGEN_STORAGE") == "s3":
    INSTALLED_APPS.append("storages")  # django-storages, for the S3 backend

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The admin in the language the browser asks for (Accept-Language), or the one picked
    # in the header's switcher (a cookie): English or Simplified Chinese.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Every page needs a login but the ones marked login_not_required: the admin's login,
    # the providers' webhooks and the outside reviewers' pages (they carry their own
    # signed link).
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "campaigns.urls"
WSGI_APPLICATION = "campaigns.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        # 0 (a connection per request) suits runserver's thread per connection; set e.g. 60
        # behind gunicorn.
        conn_max_age=int(env("DATABASE_CONN_MAX_AGE", "0")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web server, workers and the CLI share one file: wait for locks instead of failing.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # A file, not memory: the integration tests' workers and live server share it.
    DATABASES["default"]["TEST"] = {
        "NAME": env("DATABASE_TEST_NAME", str(BASE_DIR / ".run" / f"test-{os.getpid()}.sqlite3"))
    }


def redis_url_from_env(environ: Mapping[str, str]) -> str:
    """REDIS_URL with socket timeouts (REDIS_SOCKET_TIMEOUT, REDIS_SOCKET_CONNECT_TIMEOUT,
    2 s each unless the URL names its own): a stalled Redis then fails a web request's
    enqueue in seconds, with an error in the log, instead of holding the request (the row
    is left for the reconciler). RQ workers lengthen the read timeout of their own
    connection to outlast their blocking wait for jobs."""
    url = environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    base, _, query_string = url.partition("?")  # urlunsplit would drop unix:// 's slashes
    query = dict(parse_qsl(query_string))
    query.setdefault("socket_timeout", environ.get("REDIS_SOCKET_TIMEOUT") or "2")
    query.setdefault("socket_connect_timeout", environ.get("REDIS_SOCKET_CONNECT_TIMEOUT") or "2")
    return f"{base}?{urlencode(query)}"


def rq_queues_from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    return {"default": {"URL": redis_url_from_env(environ), "DEFAULT_TIMEOUT": 300}}


REDIS_URL = redis_url_from_env(os.environ)
RQ_QUEUES = rq_queues_from_env(os.environ)
# Takes over the scheduler quickly when another worker died (see imagen_assets/worker.py).
RQ = {"WORKER_CLASS": "imagen_assets.worker.Worker"}

# A cache the web server and the workers share when Redis is configured: a WaveSpeed webhook
# secret a worker fetched at submit time is then already known to the webhook view.
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
        if env("REDIS_URL")
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# E-mail (the workflow's notifications): SMTP when EMAIL_HOST is set, else the console
# backend, so `make demo` shows every message in the worker's log.
EMAIL_HOST = env("EMAIL_HOST")
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend"
)
EMAIL_PORT = int(env("EMAIL_PORT", "25"))
EMAIL_HOST_USER = env("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS")
# A mail server that stops answering fails the job instead of holding the worker.
EMAIL_TIMEOUT = 30
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "webmaster@localhost")

LANGUAGE_CODE = "en-us"
# The languages the app ships: English and Simplified Chinese (imagen_assets/locale/zh_Hans).
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / ".run" / "static"
MEDIA_URL = "/media/"
MEDIA_ROOT = env("MEDIA_ROOT", str(BASE_DIR / "media"))
# The image file views send anonymous visitors to the admin's login page.
LOGIN_URL = "admin:login"

S3_OPTION_NAMES = {
    # django-storages' own AWS_* names -> S3Storage options
    "AWS_STORAGE_BUCKET_NAME": "bucket_name",
    "AWS_S3_ENDPOINT_URL": "endpoint_url",
    "AWS_S3_REGION_NAME": "region_name",
    "AWS_ACCESS_KEY_ID": "access_key",
    "AWS_SECRET_ACCESS_KEY": "secret_key",
    "AWS_S3_CUSTOM_DOMAIN": "custom_domain",
    "AWS_LOCATION": "location",
    "AWS_DEFAULT_ACL": "default_acl",
    "AWS_S3_ADDRESSING_STYLE": "addressing_style",
}


def imagen_files_root(environ: Mapping[str, str]) -> str:
    """Where the images are written on disk: IMAGEN_FILES_ROOT, else "imagen-private" beside
    MEDIA_ROOT. Never under MEDIA_ROOT, which the site serves to anyone (check W005)."""
    media_root = Path(environ.get("MEDIA_ROOT") or BASE_DIR / "media")
    return environ.get("IMAGEN_FILES_ROOT") or str(media_root.parent / "imagen-private")


def storages_from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """STORAGES for the site. The images go to the private "imagen" storage: on disk outside
    MEDIA_ROOT, or, with IMAGEN_STORAGE=s3, on S3 (signed URLs unless AWS_QUERYSTRING_AUTH
    says otherwise); the app's views serve them after a permission check."""
    result: dict[str, Any] = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        "imagen": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": imagen_files_root(environ)},
        },
    }
    if environ.get("IMAGEN_STORAGE") == "s3":
        options: dict[str, Any] = {
            option: environ[name] for name, option in S3_OPTION_NAMES.items() if environ.get(name)
        }
        if "AWS_QUERYSTRING_AUTH" in environ:
            options["querystring_auth"] = environ["AWS_QUERYSTRING_AUTH"].lower() in ("1", "true")
        result["imagen"] = {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options}
    return result


STORAGES = storages_from_env(os.environ)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


def imagen_assets_from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """The IMAGEN_ASSETS setting built from the environment variables in the README."""
    sandbox_url = environ.get("IMAGEN_SANDBOX_URL", "http://127.0.0.1:8765")
    allow_hosts = environ.get("IMAGEN_DOWNLOAD_ALLOW_HOSTS", "")
    # Only what the environment sets; the app's defaults otherwise.
    tuning: dict[str, Any] = {
        key: convert(environ[name])
        for name, key, convert in (
            ("IMAGEN_BREAKER_THRESHOLD", "BREAKER_THRESHOLD", int),
            ("IMAGEN_BREAKER_COOLDOWN", "BREAKER_COOLDOWN", float),
            ("IMAGEN_HTTP_DEADLINE", "HTTP_DEADLINE", float),
        )
        if environ.get(name)
    }

    def result_hosts(name: str) -> dict[str, Any]:
        """``{"RESULT_HOSTS": [...]}`` from a comma list, or nothing (the app's defaults)."""
        value = environ.get(name, "")
        hosts = [host.strip() for host in value.split(",") if host.strip()]
        return {"RESULT_HOSTS": hosts} if hosts else {}

    def model(name: str) -> dict[str, Any]:
        """``{"MODEL": ...}`` when the environment names one, else nothing (the default)."""
        value = environ.get(name, "").strip()
        return {"MODEL": value} if value else {}

    def cap(name: str) -> dict[str, Any]:
        """``{"MAX_CONCURRENCY": n}`` when the environment sets one, else nothing (no cap)."""
        value = environ.get(name, "").strip()
        if not value:
            return {}
        # Not a whole number: passed on as it is, for check E037 to say so.
        return {"MAX_CONCURRENCY": int(value) if value.isdigit() else value}

    return {
        "DEFAULT_PROVIDER": environ.get("IMAGEN_DEFAULT_PROVIDER", "sandbox"),
        "PROVIDERS": {
            "sandbox": {
                "BACKEND": "imagen_assets.providers.sandbox.SandboxProvider",
                "OPTIONS": {"BASE_URL": sandbox_url, **cap("IMAGEN_SANDBOX_MAX_CONCURRENCY")},
            },
            "wave": {
                "BACKEND": "imagen_assets.providers.wave.WaveProvider",
                "OPTIONS": {
                    "API_KEY": environ.get("IMAGEN_WAVE_API_KEY", ""),
                    "BASE_URL": environ.get("IMAGEN_WAVE_BASE_URL") or "https://www.qingbo.dev",
                    **model("IMAGEN_WAVE_MODEL"),
                    **cap("IMAGEN_WAVE_MAX_CONCURRENCY"),
                    **result_hosts("IMAGEN_WAVE_RESULT_HOSTS"),
                },
            },
            "wavespeed": {
                "BACKEND": "imagen_assets.providers.wavespeed.WaveSpeedProvider",
                "OPTIONS": {
                    "API_KEY": environ.get("IMAGEN_WAVESPEED_API_KEY", ""),
                    "BASE_URL": environ.get("IMAGEN_WAVESPEED_BASE_URL")
                    or "https://api.wavespeed.ai",
                    **model("IMAGEN_WAVESPEED_MODEL"),
                    **cap("IMAGEN_WAVESPEED_MAX_CONCURRENCY"),
                    "WEBHOOK_SECRET": environ.get("IMAGEN_WAVESPEED_WEBHOOK_SECRET", ""),
                    **result_hosts("IMAGEN_WAVESPEED_RESULT_HOSTS"),
                },
            },
        },
        "WEBHOOK_BASE_URL": environ.get("IMAGEN_WEBHOOK_BASE_URL") or None,
        "STORAGE": "imagen",
        "DOWNLOAD_ALLOW_HOSTS": [h.strip() for h in allow_hosts.split(",") if h.strip()],
        "SITE_URL": environ.get("IMAGEN_SITE_URL") or None,
        **tuning,
    }


IMAGEN_ASSETS = imagen_assets_from_env(os.environ)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "imagen_assets": {"handlers": ["console"], "level": env("IMAGEN_LOG_LEVEL", "INFO")},
        # Server errors with their tracebacks, also when DEBUG is off.
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
    },
}
