"""System checks: one test per id, and the example site's own configuration is clean."""

from __future__ import annotations

import io
import os
import secrets
import subprocess
import sys

import pytest
from django.apps import apps
from django.core import checks as django_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from unit_helpers import WS_BACKEND
from unit_helpers import imagen_settings as unit_imagen_settings

from campaigns.settings import BASE_DIR, imagen_assets_from_env, storages_from_env
from imagen_assets import queueing
from imagen_assets.checks import check_redis_keeps_jobs, check_settings
from imagen_assets.providers.wave import WaveProvider

# The shape of the sandbox's own secrets (whsec_ + 48 hex digits), which copy WaveSpeed's.
REAL_LOOKING_SECRET = "whsec_" + "5e0c9a1f" * 6


#: A Wave model that is not in imagen_assets.retired_models: the unit settings' Wave uses
#: the provider's default, imagen-4.0, which Wave delisted (W040 has its own tests below).
CURRENT_WAVE_MODEL = "wave-model-still-served"


def imagen_settings(**overrides) -> dict:
    """The unit tests' settings, with a Wave model still served."""
    config = unit_imagen_settings(**overrides)
    config["PROVIDERS"]["wave"]["OPTIONS"].setdefault("MODEL", CURRENT_WAVE_MODEL)
    return config


@pytest.fixture(autouse=True)
def _served_models(settings):
    settings.IMAGEN_ASSETS = imagen_settings()


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
            # Wave's default, imagen-4.0, was delisted: W040 until MODEL is switched.
            "IMAGEN_WAVE_MODEL": CURRENT_WAVE_MODEL,
            "IMAGEN_WAVESPEED_API_KEY": "ws",
            "IMAGEN_WAVESPEED_WEBHOOK_SECRET": REAL_LOOKING_SECRET,
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


class RetiredModelCheckTests:
    def test_w040_a_usable_provider_on_a_retired_model(self, settings):
        config = imagen_settings()
        del config["PROVIDERS"]["wave"]["OPTIONS"]["MODEL"]  # Wave's default: imagen-4.0

        messages = run(settings, **config)

        assert ids(messages) == ["imagen_assets.W040"]
        assert messages[0].level == django_checks.WARNING
        assert "'imagen-4.0'" in messages[0].msg
        assert "2026-09-03" in messages[0].msg
        assert "SILENCED_SYSTEM_CHECKS" in messages[0].hint
        assert "['wave']['OPTIONS']['MODEL']" in messages[0].hint

    def test_w040_matches_a_subclass_of_the_retired_backend(self, settings):
        config = imagen_settings()
        config["PROVIDERS"]["mine"] = {
            "BACKEND": "tests.unit.test_checks.MyWave",
            "OPTIONS": {"API_KEY": "k", "MODEL": "imagen-4.0"},
        }

        assert ids(run(settings, **config)) == ["imagen_assets.W040"]

    def test_the_same_model_id_on_another_provider_is_not_retired(self, settings):
        assert run(settings, **with_options("wavespeed", MODEL="imagen-4.0")) == []

    def test_no_w040_for_a_provider_the_sandbox_stands_in_for(self, settings):
        # The demo without keys: Wave's backend pointed at the sandbox, which serves any model.
        config = imagen_settings()
        config["PROVIDERS"]["wave"]["OPTIONS"] = {
            "API_KEY": "sandbox",
            "BASE_URL": "http://127.0.0.1:8765",
            "RESULT_HOSTS": ["127.0.0.1"],
        }
        config["PROVIDERS"]["sandbox"] = {
            "BACKEND": "imagen_assets.providers.sandbox.SandboxProvider",
            "OPTIONS": {"BASE_URL": "http://127.0.0.1:8765/"},
        }
        assert "imagen_assets.W040" not in ids(run(settings, **config))

        config["PROVIDERS"]["sandbox"]["OPTIONS"]["BASE_URL"] = "http://127.0.0.1:9999"
        assert "imagen_assets.W040" in ids(run(settings, **config))

    def test_no_w040_for_a_provider_that_cannot_be_used_yet(self, settings):
        config = imagen_settings()
        config["PROVIDERS"]["wave"]["OPTIONS"] = {"API_KEY": ""}

        assert ids(run(settings, **config)) == ["imagen_assets.W001"]

    def test_w040_is_silenced_like_any_check(self, settings):
        config = imagen_settings()
        del config["PROVIDERS"]["wave"]["OPTIONS"]["MODEL"]
        settings.IMAGEN_ASSETS = config
        settings.SILENCED_SYSTEM_CHECKS = ["imagen_assets.W005"]  # the test storage's
        with pytest.raises(SystemCheckError, match=r"imagen_assets\.W040"):
            call_command("check", "--fail-level", "WARNING", stdout=io.StringIO())

        settings.SILENCED_SYSTEM_CHECKS = ["imagen_assets.W005", "imagen_assets.W040"]

        call_command("check", "--fail-level", "WARNING", stdout=io.StringIO())


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

    @pytest.mark.parametrize("grace", [0, -5, "3600", None, True, 600, 300, 120])
    def test_e010_orphan_grace_not_longer_than_the_job_timeout(self, settings, grace):
        messages = run(settings, **imagen_settings(ORPHAN_GRACE=grace))

        assert ids(messages) == ["imagen_assets.E010"]
        # The longer of the queue's DEFAULT_TIMEOUT (300 s in tests/settings.py) and the
        # time limit of the jobs that handle several tasks (conf.BATCH_JOB_TIMEOUT).
        assert "600 s" in messages[0].msg

    def test_e010_uses_the_longest_job_timeout(self, settings):
        settings.RQ_QUEUES = {"default": {"URL": "redis://127.0.0.1:1/0"}}  # RQ's 180 s
        assert ids(run(settings, **imagen_settings(ORPHAN_GRACE=600))) == ["imagen_assets.E010"]
        assert ids(run(settings, **imagen_settings(ORPHAN_GRACE=601))) == []

        settings.RQ_QUEUES = {"default": {"URL": "redis://127.0.0.1:1/0", "DEFAULT_TIMEOUT": 900}}
        assert ids(run(settings, **imagen_settings(ORPHAN_GRACE=900))) == ["imagen_assets.E010"]
        assert ids(run(settings, **imagen_settings(ORPHAN_GRACE=901))) == []

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

    @pytest.mark.parametrize(
        ("key", "value"),
        [
            ("WEBHOOK_ACCEPT_AFTER_FINISH", -1),
            ("WEBHOOK_ACCEPT_AFTER_FINISH", "3600"),
            ("WEBHOOK_ACCEPT_AFTER_FINISH", None),
            ("WEBHOOK_ACCEPT_AFTER_FINISH", True),
            ("WEBHOOK_MAX_EVENTS_PER_TASK", 0),
            ("WEBHOOK_MAX_EVENTS_PER_TASK", 2.5),
            ("WEBHOOK_MAX_EVENTS_PER_TASK", "10"),
        ],
    )
    def test_e009_a_webhook_bound_that_bounds_nothing(self, settings, key, value):
        messages = run(settings, **imagen_settings(**{key: value}))

        assert ids(messages) == ["imagen_assets.E009"]
        assert key in messages[0].msg

    @pytest.mark.parametrize(
        ("key", "value"),
        [
            ("WEBHOOK_ACCEPT_AFTER_FINISH", 0),
            ("WEBHOOK_ACCEPT_AFTER_FINISH", 90.5),
            ("WEBHOOK_MAX_EVENTS_PER_TASK", 1),
        ],
    )
    def test_e009_accepts_the_smallest_sensible_bounds(self, settings, key, value):
        assert run(settings, **imagen_settings(**{key: value})) == []


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


class ResultHostsCheckTests:
    """D1: RESULT_HOSTS must be a list of host patterns (E036); '*' is allowed, with a
    warning (W007)."""

    @pytest.mark.parametrize(
        "value",
        ["cdn.qingbo.dev", ["https://cdn.qingbo.dev/"], ["cdn.*.dev"], [".dev"], [42]],
        ids=["a-string", "a-url", "inner-wildcard", "a-whole-tld", "not-a-string"],
    )
    def test_e036_a_malformed_entry(self, settings, value):
        messages = run(settings, **with_options("wave", RESULT_HOSTS=value))

        assert ids(messages) == ["imagen_assets.E036"]
        assert "IMAGEN_ASSETS['PROVIDERS']['wave']['OPTIONS']['RESULT_HOSTS']" in messages[0].msg

    def test_the_example_site_reads_them_from_the_environment(self, settings):
        config = imagen_assets_from_env(
            {
                "IMAGEN_WAVESPEED_RESULT_HOSTS": "files.example.com, .wavespeed.ai",
                "IMAGEN_WAVE_RESULT_HOSTS": "https://cdn.qingbo.dev/",
            }
        )

        assert config["PROVIDERS"]["wavespeed"]["OPTIONS"]["RESULT_HOSTS"] == [
            "files.example.com",
            ".wavespeed.ai",
        ]
        assert "RESULT_HOSTS" not in imagen_assets_from_env({})["PROVIDERS"]["wave"]["OPTIONS"]
        settings.IMAGEN_ASSETS = config
        assert "imagen_assets.E036" in ids(check_settings())

    def test_w007_any_host(self, settings):
        messages = run(settings, **with_options("wavespeed", RESULT_HOSTS=["*"]))

        assert ids(messages) == ["imagen_assets.W007"]
        assert messages[0].level == django_checks.WARNING

    def test_well_formed_patterns_are_accepted(self, settings):
        config = with_options(
            "wave", RESULT_HOSTS=["cdn.qingbo.dev", ".qingbo.ai", "*.example.com", "10.0.0.7"]
        )
        assert run(settings, **config) == []


class LimitCheckTests:
    """E030, E032, E033: limits that must be positive numbers (docs/reliability.md C1)."""

    @pytest.mark.parametrize("value", [None, 0, -1, "40000000", 4e7, True])
    def test_e030_max_image_pixels_not_a_positive_whole_number(self, settings, value):
        messages = run(settings, **imagen_settings(MAX_IMAGE_PIXELS=value))

        assert ids(messages) == ["imagen_assets.E030"]
        assert "MAX_IMAGE_PIXELS" in messages[0].msg

    def test_a_small_max_image_pixels_is_allowed(self, settings):
        assert run(settings, **imagen_settings(MAX_IMAGE_PIXELS=1_000_000)) == []

    @pytest.mark.parametrize("key", ["HTTP_TIMEOUT", "HTTP_DEADLINE", "BREAKER_COOLDOWN"])
    @pytest.mark.parametrize("value", [None, 0, -5, "30", float("nan"), float("inf")])
    def test_e032_http_seconds_not_a_positive_number(self, settings, key, value):
        messages = run(settings, **imagen_settings(**{key: value}))

        assert ids(messages) == ["imagen_assets.E032"]
        assert key in messages[0].msg

    @pytest.mark.parametrize("value", [0, -1, 2.5, "5", None, False])
    def test_e033_breaker_threshold_not_a_whole_number_of_at_least_one(self, settings, value):
        messages = run(settings, **imagen_settings(BREAKER_THRESHOLD=value))

        assert ids(messages) == ["imagen_assets.E033"]

    def test_a_breaker_that_opens_at_the_first_failure_is_allowed(self, settings):
        assert run(settings, **imagen_settings(BREAKER_THRESHOLD=1, BREAKER_COOLDOWN=5)) == []

    @pytest.mark.parametrize("option", ["TIMEOUT", "DEADLINE"])
    def test_e032_provider_seconds_not_a_positive_number(self, settings, option):
        messages = run(settings, **with_options("wave", **{option: "ten"}))

        assert ids(messages) == ["imagen_assets.E032"]
        assert f"['wave']['OPTIONS']['{option}']" in messages[0].msg

    def test_whole_and_fractional_seconds_are_allowed(self, settings):
        config = with_options("wave", TIMEOUT=5, DEADLINE=12.5)
        config.update(HTTP_TIMEOUT=10, HTTP_DEADLINE=42.0)

        assert run(settings, **config) == []


class WebhookSecretCheckTests:
    """E031: a configured webhook secret too short to sign with is refused; real ones pass."""

    @pytest.mark.parametrize(
        "secret", ["x", "whsec_x", "whsec_" + "a" * 23, "a" * 23, "  whsec_short  "]
    )
    def test_e031_short_secret(self, settings, secret):
        messages = run(settings, **with_options("wavespeed", WEBHOOK_SECRET=secret))

        assert ids(messages) == ["imagen_assets.E031"]
        assert messages[0].level == django_checks.ERROR
        assert "['wavespeed']['OPTIONS']['WEBHOOK_SECRET']" in messages[0].msg
        if len(secret.strip()) > 5:  # a letter or two is in any sentence
            assert secret.strip() not in f"{messages[0].msg} {messages[0].hint}"

    def test_e031_names_the_short_one_of_a_rotation_list(self, settings):
        config = with_options("wavespeed", WEBHOOK_SECRET=[REAL_LOOKING_SECRET, "whsec_old"])

        messages = run(settings, **config)

        assert ids(messages) == ["imagen_assets.E031"]
        assert "['WEBHOOK_SECRET'][1]" in messages[0].msg

    @pytest.mark.parametrize(
        "secret",
        [
            REAL_LOOKING_SECRET,
            "whsec_" + "a" * 24,  # 24 bytes of key after the prefix
            "a" * 24,  # configured without its prefix, as WaveSpeed's docs allow
            "whsec_" + secrets.token_urlsafe(32),
            [REAL_LOOKING_SECRET, "whsec_" + secrets.token_hex(16)],
        ],
    )
    def test_real_secrets_pass(self, settings, secret):
        assert run(settings, **with_options("wavespeed", WEBHOOK_SECRET=secret)) == []

    def test_an_empty_secret_is_not_e031_but_fetched(self, settings):
        assert run(settings, **with_options("wavespeed", WEBHOOK_SECRET="")) == []


def production_env(**overrides: str) -> dict[str, str]:
    """The environment of a correctly configured deployment of the example site."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DJANGO_SETTINGS_MODULE": "campaigns.settings_production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "marketing.example.com",
        "IMAGEN_DEFAULT_PROVIDER": "wavespeed",
        "IMAGEN_WAVE_API_KEY": "wave-key",
        "IMAGEN_WAVE_MODEL": CURRENT_WAVE_MODEL,  # imagen-4.0 was delisted (W040)
        "IMAGEN_WAVESPEED_API_KEY": "wavespeed-key",
        "IMAGEN_WAVESPEED_WEBHOOK_SECRET": REAL_LOOKING_SECRET,
        "IMAGEN_WEBHOOK_BASE_URL": "https://marketing.example.com",
        "IMAGEN_SITE_URL": "https://marketing.example.com",
    }
    env.update(overrides)
    return env


def check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class DeployCheckTests:
    """docs/reliability.md C1: the example site's production-like settings pass
    ``check --deploy --fail-level WARNING``, and a short webhook secret fails it."""

    def test_a_correct_deployment_is_clean(self):
        result = check_deploy(production_env())

        assert result.returncode == 0, result.stdout + result.stderr
        assert "no issues" in result.stdout

    def test_a_retired_model_fails_the_deployment_until_switched(self):
        env = production_env()
        del env["IMAGEN_WAVE_MODEL"]
        result = check_deploy(env)
        assert result.returncode != 0
        assert "imagen_assets.W040" in result.stderr

        silenced = check_deploy({**env, "SILENCED_SYSTEM_CHECKS": "imagen_assets.W040"})
        assert silenced.returncode == 0, silenced.stdout + silenced.stderr

    def test_a_short_webhook_secret_fails_the_deployment(self):
        result = check_deploy(production_env(IMAGEN_WAVESPEED_WEBHOOK_SECRET="whsec_abc123"))

        assert result.returncode != 0
        assert "imagen_assets.E031" in result.stderr
        assert "whsec_abc123" not in result.stdout + result.stderr


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

    @pytest.mark.parametrize(
        "url",
        ["redis://127.0.0.1:1/0", "redis://127.0.0.1:1/0?socket_timeout=abc"],
        ids=["nothing listening", "a malformed option"],
    )
    def test_w020_says_nothing_and_never_raises_when_redis_cannot_be_asked(self, settings, url):
        settings.RQ_QUEUES = {"default": {"URL": url}}

        assert queueing.eviction_policy() is None
        assert check_redis_keeps_jobs() == []

    def test_the_w020_check_is_registered_with_django(self, monkeypatch):
        monkeypatch.setattr(queueing, "eviction_policy", lambda: "allkeys-lru")

        assert "imagen_assets.W020" in ids(django_checks.run_checks())


class MyWave(WaveProvider):
    """A host site's own Wave backend (W040 matches subclasses)."""
