"""System checks: one test per id, and the example site's own configuration is clean."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.core import checks as django_checks
from unit_helpers import WS_BACKEND, imagen_settings

from campaigns.settings import imagen_assets_from_env, storages_from_env
from imagen_assets import queueing
from imagen_assets.checks import check_redis_keeps_jobs, check_settings


def ids(messages) -> list[str]:
    return [message.id for message in messages]


def run(settings, **config) -> list[django_checks.CheckMessage]:
    settings.IMAGEN_ASSETS = config
    return check_settings()


def with_options(alias: str, **options) -> dict:
    config = imagen_settings()
    config["PROVIDERS"][alias]["OPTIONS"].update(options)
    return config


class CleanConfigurationTests:
    def test_the_unit_test_configuration_has_no_messages(self, settings):
        assert check_settings() == []

    def test_the_example_site_out_of_the_box_has_no_errors(self, settings):
        settings.IMAGEN_ASSETS = imagen_assets_from_env({})
        settings.STORAGES = storages_from_env({})

        messages = check_settings()

        assert [m for m in messages if m.level >= django_checks.ERROR] == []
        # Wave and WaveSpeed simply have no key yet: a warning each, not an error; mail
        # would have no links until IMAGEN_SITE_URL is set.
        assert sorted(ids(messages)) == [
            "imagen_assets.W001",
            "imagen_assets.W001",
            "imagen_assets.W004",
        ]

    def test_the_example_site_as_loaded_has_no_errors(self, settings):
        from campaigns import settings as site

        settings.IMAGEN_ASSETS = site.IMAGEN_ASSETS
        settings.STORAGES = site.STORAGES

        assert [m for m in check_settings() if m.level >= django_checks.ERROR] == []

    def test_the_example_site_fully_configured_has_no_messages(self, settings):
        env = {
            "IMAGEN_WAVE_API_KEY": "w",
            "IMAGEN_WAVESPEED_API_KEY": "ws",
            "IMAGEN_WAVESPEED_WEBHOOK_SECRET": "whsec_x",
            "IMAGEN_WEBHOOK_BASE_URL": "https://marketing.example.com",
            "IMAGEN_DEFAULT_PROVIDER": "wavespeed",
            "IMAGEN_SITE_URL": "https://marketing.example.com",
        }
        settings.IMAGEN_ASSETS = imagen_assets_from_env(env)
        settings.STORAGES = storages_from_env(env)

        # The sandbox signs with a secret it serves itself, so it needs no W002 either.
        assert check_settings() == []

    def test_the_check_is_registered_with_django(self, settings):
        settings.IMAGEN_ASSETS = {**imagen_settings(), "BOGUS": 1}

        assert "imagen_assets.E006" in ids(django_checks.run_checks())


class ErrorCheckTests:
    @pytest.mark.parametrize(
        "backend",
        [
            "imagen_assets.providers.nothing.Here",
            "imagen_assets.providers.wave.NoSuchClass",
            "imagen_assets.conf.get",
            "django.core.files.storage.FileSystemStorage",
        ],
    )
    def test_e001_backend_cannot_be_loaded(self, settings, backend):
        config = imagen_settings()
        config["PROVIDERS"]["wave"]["BACKEND"] = backend

        messages = run(settings, **config)

        assert ids(messages) == ["imagen_assets.E001"]
        assert "'wave'" in messages[0].msg

    def test_e001_backend_missing(self, settings):
        config = imagen_settings()
        del config["PROVIDERS"]["wave"]["BACKEND"]

        assert ids(run(settings, **config)) == ["imagen_assets.E001"]

    def test_e001_unknown_option(self, settings):
        messages = run(settings, **with_options("wavespeed", WEBHOOK_SECRETS="typo"))

        assert ids(messages) == ["imagen_assets.E001"]
        assert "WEBHOOK_SECRETS" in messages[0].msg
        assert "WaveSpeedProvider" in messages[0].msg

    def test_e001_invalid_option_value(self, settings):
        assert ids(run(settings, **with_options("wavespeed", RESOLUTION="8k"))) == [
            "imagen_assets.E001"
        ]

    def test_e002_default_provider_not_configured(self, settings):
        messages = run(settings, **imagen_settings(DEFAULT_PROVIDER="sandbox"))

        assert ids(messages) == ["imagen_assets.E002"]
        assert "'sandbox'" in messages[0].msg
        assert "wave, wavespeed" in messages[0].hint

    def test_e003_django_rq_not_installed(self, settings, monkeypatch):
        real = apps.is_installed
        monkeypatch.setattr(apps, "is_installed", lambda name: name != "django_rq" and real(name))

        messages = check_settings()

        assert ids(messages) == ["imagen_assets.E003"]
        assert "INSTALLED_APPS" in messages[0].hint

    def test_e004_queue_not_in_rq_queues(self, settings):
        messages = run(settings, **imagen_settings(QUEUE="images"))

        assert ids(messages) == ["imagen_assets.E004"]
        assert "'images'" in messages[0].msg

    def test_e004_no_rq_queues_at_all(self, settings):
        del settings.RQ_QUEUES

        assert ids(check_settings()) == ["imagen_assets.E004"]

    def test_e005_storage_alias_missing(self, settings):
        messages = run(settings, **imagen_settings(STORAGE="imagen"))

        assert ids(messages) == ["imagen_assets.E005"]
        assert "'imagen'" in messages[0].msg

    def test_e006_unknown_key(self, settings):
        messages = run(settings, **imagen_settings(POLL_INTERVALL=3))

        assert ids(messages) == ["imagen_assets.E006"]
        assert "'POLL_INTERVALL'" in messages[0].msg
        assert "POLL_INTERVAL" in messages[0].hint

    def test_e007_default_provider_without_api_key(self, settings):
        messages = run(settings, **with_options("wavespeed", API_KEY=""))

        assert ids(messages) == ["imagen_assets.E007"]
        assert "API_KEY" in messages[0].msg
        assert "IMAGEN_WAVESPEED_API_KEY" in messages[0].hint

    @pytest.mark.parametrize(
        "url", ["marketing.example.com", "ftp://marketing.example.com", "https://", "/imagen"]
    )
    def test_e008_webhook_base_url_not_an_http_origin(self, settings, url):
        messages = run(settings, **imagen_settings(WEBHOOK_BASE_URL=url))

        assert ids(messages) == ["imagen_assets.E008"]


class WarningCheckTests:
    def test_w001_another_provider_without_api_key(self, settings):
        messages = run(settings, **with_options("wave", API_KEY=""))

        assert ids(messages) == ["imagen_assets.W001"]
        assert messages[0].level == django_checks.WARNING
        assert "IMAGEN_WAVE_API_KEY" in messages[0].hint

    def test_w002_webhooks_on_without_a_secret(self, settings):
        config = with_options("wavespeed", WEBHOOK_SECRET="")
        config["WEBHOOK_BASE_URL"] = "https://marketing.example.com"

        messages = run(settings, **config)

        assert ids(messages) == ["imagen_assets.W002"]
        assert "'wavespeed'" in messages[0].msg

    def test_no_w002_while_webhooks_are_off(self, settings):
        assert run(settings, **with_options("wavespeed", WEBHOOK_SECRET="")) == []

    @pytest.mark.parametrize("url", ["http://marketing.example.com", "http://10.0.0.5:8000"])
    def test_w003_webhook_base_url_over_http(self, settings, url):
        messages = run(settings, **imagen_settings(WEBHOOK_BASE_URL=url))

        assert ids(messages) == ["imagen_assets.W003"]

    @pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://localhost:8000"])
    def test_no_w003_for_a_local_origin(self, settings, url):
        assert run(settings, **imagen_settings(WEBHOOK_BASE_URL=url)) == []

    def test_w004_notifications_on_without_site_url(self, settings):
        messages = run(settings, **imagen_settings(SITE_URL=None))

        assert ids(messages) == ["imagen_assets.W004"]
        assert "SITE_URL" in messages[0].msg

    def test_no_w004_with_notifications_off(self, settings):
        assert run(settings, **imagen_settings(SITE_URL=None, NOTIFICATIONS=False)) == []


class SecretHygieneTests:
    def test_no_message_repeats_a_key_or_secret(self, settings):
        config = imagen_settings(DEFAULT_PROVIDER="nope", WEBHOOK_BASE_URL="http://x.example")
        config["PROVIDERS"]["extra"] = {
            "BACKEND": WS_BACKEND,
            "OPTIONS": {"API_KEY": "sk-very-secret-key", "WEBHOOK_SECRET": 12345},
        }

        text = " ".join(f"{m.msg} {m.hint}" for m in run(settings, **config))

        assert "sk-very-secret-key" not in text
        assert "12345" not in text


class RedisEvictionCheckTests:
    # With a real redis-server and `manage.py check`: tests/integration/test_redis_faults.py.
    @pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl", "allkeys-random"])
    def test_w020_an_evicting_policy(self, monkeypatch, policy):
        monkeypatch.setattr(queueing, "eviction_policy", lambda: policy)

        [message] = check_redis_keeps_jobs()

        assert message.id == "imagen_assets.W020"
        assert policy in message.msg

    @pytest.mark.parametrize("policy", ["noeviction", None])
    def test_no_w020_for_noeviction_or_an_unreachable_redis(self, monkeypatch, policy):
        monkeypatch.setattr(queueing, "eviction_policy", lambda: policy)

        assert check_redis_keeps_jobs() == []

    def test_the_w020_check_is_registered_with_django(self, monkeypatch):
        monkeypatch.setattr(queueing, "eviction_policy", lambda: "allkeys-lru")

        assert "imagen_assets.W020" in ids(django_checks.run_checks())
