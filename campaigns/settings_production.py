"""The example site as deployed: :mod:`campaigns.settings` (every value from the environment)
with Django's deployment checklist applied, so that ``manage.py check --deploy --fail-level
WARNING`` with ``DJANGO_SETTINGS_MODULE=campaigns.settings_production`` passes for a
correctly configured deployment and fails for a wrong one (docs/reliability.md C1;
tests/unit/test_checks.py runs it). ``SECRET_KEY`` and ``ALLOWED_HOSTS`` must come from the
environment; the site is assumed to sit behind an HTTPS proxy that sets
``X-Forwarded-Proto``.
"""

from __future__ import annotations

from campaigns.settings import *  # noqa: F403
from campaigns.settings import env, env_bool, env_list

DEBUG = False
SECRET_KEY = env("SECRET_KEY")  # empty: Django refuses to start
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS")

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = int(env("SECURE_HSTS_SECONDS", str(365 * 24 * 3600)))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Asking browsers to preload HSTS is a commitment for the whole domain that is hard to undo:
# a choice for the operator (SECURE_HSTS_PRELOAD=1), not a default, so its warning is
# silenced on purpose.
SILENCED_SYSTEM_CHECKS = [
    *SILENCED_SYSTEM_CHECKS,  # noqa: F405
    *([] if SECURE_HSTS_PRELOAD else ["security.W021"]),
]
