"""Settings of the test suite: fixed values, so a developer's shell cannot change what the
tests see.

One exception, because the test runs must vary it: ``DATABASE_URL``, which the PostgreSQL
pass sets (``python -m campaigns.stack postgres -- ...``). Nothing else is read from the
environment.

The integration tests' worker processes run the example site (``campaigns.settings``),
configured through the environment that ``tests/conftest.py`` (``stack_env``) builds; this
module is only what the pytest process itself runs on, the live server included.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
RUN_DIR = BASE_DIR / ".run"

SECRET_KEY = "django-insecure-test-suite-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

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

# LoginRequiredMiddleware (Django 5.1+) is on, as a careful host site would run it: every
# view of the app that must be public (webhooks, the outside reviewers' pages) is marked
# login_not_required; everything else sends anonymous visitors to LOGIN_URL.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The admin in the language the browser asks for (Accept-Language), or the one picked
    # in the header's switcher (a cookie): English or Simplified Chinese.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# As the example site: anonymous visitors of the admin and the file views log in there.
LOGIN_URL = "admin:login"

ROOT_URLCONF = "campaigns.urls"

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

# The one setting read from the environment: the PostgreSQL pass sets DATABASE_URL.
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{RUN_DIR / 'tests.sqlite3'}"),
        conn_max_age=0,
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The live server, the worker processes and the CLI share one file: wait for locks.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    # A file, not memory: the integration tests' workers open it through the DATABASE_URL
    # that tests/conftest.py (database_url) hands them. One per run, so runs do not race.
    DATABASES["default"]["TEST"] = {"NAME": str(RUN_DIR / f"test-{os.getpid()}.sqlite3")}

# Nothing here reaches a Redis a developer may run: tests that need one start their own
# (tests/conftest.py, redis_url) and point RQ_QUEUES at it.
RQ_QUEUES = {"default": {"URL": "redis://127.0.0.1:1/0", "DEFAULT_TIMEOUT": 300}}
RQ = {"WORKER_CLASS": "imagen_assets.worker.Worker"}

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

LANGUAGE_CODE = "en-us"
# The languages the app ships: English and Simplified Chinese (imagen_assets/locale/zh_Hans).
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = RUN_DIR / "static"
MEDIA_URL = "/media/"
MEDIA_ROOT = RUN_DIR / "test-media"

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The example site's providers out of the box: the sandbox by default, Wave and WaveSpeed
# with no key yet. Unit tests start from their own (tests/unit/unit_helpers.py).
IMAGEN_ASSETS = {
    "DEFAULT_PROVIDER": "sandbox",
    "PROVIDERS": {
        "sandbox": {
            "BACKEND": "imagen_assets.providers.sandbox.SandboxProvider",
            "OPTIONS": {"BASE_URL": "http://127.0.0.1:8765"},
        },
        "wave": {
            "BACKEND": "imagen_assets.providers.wave.WaveProvider",
            "OPTIONS": {"API_KEY": "", "BASE_URL": "https://www.qingbo.dev"},
        },
        "wavespeed": {
            "BACKEND": "imagen_assets.providers.wavespeed.WaveSpeedProvider",
            "OPTIONS": {
                "API_KEY": "",
                "BASE_URL": "https://api.wavespeed.ai",
                "WEBHOOK_SECRET": "",
            },
        },
    },
    "WEBHOOK_BASE_URL": None,
    "STORAGE": "default",
    "DOWNLOAD_ALLOW_HOSTS": [],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "imagen_assets": {"handlers": ["console"], "level": "INFO"},
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
    },
}
