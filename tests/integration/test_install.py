"""The wheel installs into another Django site and works there."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from campaigns.stack import BASE_DIR

pytestmark = [pytest.mark.integration]

OTHER_SETTINGS = """
SECRET_KEY = "other-site"
DEBUG = True
ALLOWED_HOSTS = ["testserver"]
ROOT_URLCONF = "othersite.urls"
INSTALLED_APPS = [
    "django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
    "django.contrib.sessions", "django.contrib.messages", "django.contrib.staticfiles",
    "django_rq", "imagen_assets",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}}
STATIC_URL = "static/"
USE_TZ = True
RQ_QUEUES = {"default": {"URL": "redis://127.0.0.1:1/0"}}
IMAGEN_ASSETS = {
    "DEFAULT_PROVIDER": "wavespeed",
    "PROVIDERS": {"wavespeed": {
        "BACKEND": "imagen_assets.providers.wavespeed.WaveSpeedProvider",
        "OPTIONS": {"API_KEY": "k", "WEBHOOK_SECRET": "whsec_other-site-0123456789abcdef"},
    }},
    "SITE_URL": "https://marketing.example.com",
}
"""

OTHER_URLS = """
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("imagen/", include("imagen_assets.urls")),
]
"""

SMOKE = """
import imagen_assets, sys
assert "site-packages-under-test" in imagen_assets.__file__, imagen_assets.__file__
from django.contrib.auth.models import User
from django.test import Client
from imagen_assets.models import Campaign
User.objects.create_superuser("admin", "a@example.com", "pw")
Campaign.objects.create(name="Other", slug="other")
client = Client()
client.login(username="admin", password="pw")
for url in ["/admin/imagen_assets/campaign/", "/admin/imagen_assets/generatedimage/"]:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
assert client.get("/imagen/webhooks/wavespeed/").status_code == 405
# The wheel's compiled catalogue: the admin in Chinese.
from django.utils import translation
with translation.override("zh-hans"):
    page = client.get("/admin/imagen_assets/campaign/").content.decode()
assert "生成图片" in page, page
print("other site OK")
"""


def test_wheel_ships_only_the_app_and_works_in_another_site(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(BASE_DIR), "--no-deps", "-q", "-w", str(wheels)],
        check=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("imagen_assets-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert {t for t in top_level if not t.endswith(".dist-info")} == {"imagen_assets"}
    assert "imagen_assets/migrations/0001_initial.py" in names
    assert any(n.startswith("imagen_assets/templates/") for n in names)
    assert "imagen_assets/py.typed" in names
    # The translations, compiled when the wheel is built (.mo files are not in the repository).
    assert "imagen_assets/locale/zh_Hans/LC_MESSAGES/django.po" in names
    assert "imagen_assets/locale/zh_Hans/LC_MESSAGES/django.mo" in names

    target = tmp_path / "site-packages-under-test"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    site = tmp_path / "site"
    (site / "othersite").mkdir(parents=True)
    (site / "othersite" / "__init__.py").write_text("")
    (site / "othersite" / "settings.py").write_text(textwrap.dedent(OTHER_SETTINGS))
    (site / "othersite" / "urls.py").write_text(textwrap.dedent(OTHER_URLS))
    env = {key: value for key, value in os.environ.items() if not key.startswith("DJANGO_")}
    # The installed wheel comes first, ahead of this checkout's editable install.
    env["PYTHONPATH"] = os.pathsep.join([str(target), str(site)])
    env["DJANGO_SETTINGS_MODULE"] = "othersite.settings"

    def django_admin(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "django", *args],
            cwd=site,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    check = django_admin("check", "--fail-level", "WARNING")
    assert check.returncode == 0, check.stdout + check.stderr
    migrate = django_admin("migrate", "-v", "0")
    assert migrate.returncode == 0, migrate.stderr
    smoke = django_admin("shell", "-v", "0", "-c", SMOKE)
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    assert "other site OK" in smoke.stdout
