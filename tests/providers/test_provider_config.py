"""Building providers from settings, options only some providers have, the sandbox alias and
the test fake. What every provider does with its options is in tests/provider_cases.py."""

from __future__ import annotations

import re
from decimal import Decimal

import httpx
import pytest
from django.core.exceptions import ImproperlyConfigured

from imagen_assets.providers import GenerationParams, Provider, ProviderError, get_provider
from imagen_assets.providers.sandbox import SandboxProvider
from imagen_assets.providers.wave import WaveProvider
from imagen_assets.providers.wavespeed import WaveSpeedProvider
from imagen_assets.status import TaskStatus
from tests.mock_http import MockHTTP, fixture, json_response

WAVE = "imagen_assets.providers.wave.WaveProvider"
WAVESPEED = "imagen_assets.providers.wavespeed.WaveSpeedProvider"


class ProviderOptionsTests:
    def test_webhook_secret_is_a_wavespeed_option_only(self):
        WaveSpeedProvider("ws", {"WEBHOOK_SECRET": "whsec_x"})
        with pytest.raises(ImproperlyConfigured, match="WEBHOOK_SECRET"):
            WaveProvider("wave", {"WEBHOOK_SECRET": "whsec_x"})

    @pytest.mark.parametrize("secret", [42, {"a": "b"}, ["ok", 3]])
    def test_refuses_a_webhook_secret_of_the_wrong_type(self, secret):
        with pytest.raises(ImproperlyConfigured, match="WEBHOOK_SECRET"):
            WaveSpeedProvider("ws", {"WEBHOOK_SECRET": secret})

    def test_options_override_defaults(self):
        provider = WaveProvider(
            "p", {"BASE_URL": "https://api.qingbo.ai/", "PRICE_PER_IMAGE": "0.05"}
        )

        assert provider.base_url == "https://api.qingbo.ai"
        assert provider.price_per_image == Decimal("0.05")


class ProviderDeclarationTests:
    def test_a_provider_has_a_negative_prompt_unless_it_declares_otherwise(self):
        assert Provider.supports_negative_prompt is True


class GetProviderTests:
    @pytest.fixture
    def providers(self, settings):
        settings.IMAGEN_ASSETS = {
            "DEFAULT_PROVIDER": "ws",
            "PROVIDERS": {
                "wave": {"BACKEND": WAVE, "OPTIONS": {"API_KEY": "wk"}},
                "ws": {"BACKEND": WAVESPEED, "OPTIONS": {"API_KEY": "sk", "WEBHOOK_SECRET": "x"}},
                "typo": {"BACKEND": "imagen_assets.providers.wave.WaveProvidr"},
                "nomodule": {"BACKEND": "imagen_assets.providers.nowhere.Provider"},
                "notprovider": {"BACKEND": "httpx.Client"},
                "nobackend": {"OPTIONS": {}},
                "badoption": {"BACKEND": WAVE, "OPTIONS": {"SECRET": "x"}},
            },
        }

    def test_builds_the_provider_of_an_alias(self, providers):
        with get_provider("wave") as provider:
            assert isinstance(provider, WaveProvider)
            assert provider.alias == "wave"
            assert provider.missing_options() == []

    def test_builds_the_default_provider(self, providers):
        provider = get_provider()

        assert isinstance(provider, WaveSpeedProvider)
        assert provider.webhook_secrets() == ["x"]

    def test_passes_the_client_on(self, providers):
        client = httpx.Client()

        assert get_provider("wave", client=client).client is client

    def test_an_unknown_alias_names_it_and_the_known_ones(self, providers):
        with pytest.raises(ImproperlyConfigured, match=r"'nope'.*wave"):
            get_provider("nope")

    @pytest.mark.parametrize("alias", ["typo", "nomodule", "notprovider", "nobackend"])
    def test_a_bad_backend_is_a_configuration_error(self, providers, alias):
        with pytest.raises(ImproperlyConfigured):
            get_provider(alias)

    def test_a_bad_option_is_a_configuration_error(self, providers):
        with pytest.raises(ImproperlyConfigured, match=r"SECRET.*WaveProvider"):
            get_provider("badoption")

    @pytest.mark.parametrize(
        ("alias", "cls"),
        [("sandbox", SandboxProvider), ("wave", WaveProvider), ("wavespeed", WaveSpeedProvider)],
    )
    def test_the_example_site_aliases_build(self, alias, cls):
        assert type(get_provider(alias)) is cls


class SandboxProviderTests:
    def test_needs_no_key_and_costs_nothing(self):
        provider = SandboxProvider("sandbox", {})

        assert provider.missing_options() == []
        assert provider.price_per_image == Decimal(0)
        assert provider.auth_headers() == {"Authorization": "Bearer sandbox"}

    def test_defaults(self):
        provider = SandboxProvider("p", {})

        assert (provider.base_url, provider.model, provider.price_per_image) == (
            "http://127.0.0.1:8765",
            "wavespeed-ai/imagen4",
            Decimal(0),
        )

    def test_repr_never_shows_the_options(self):
        text = repr(
            SandboxProvider("p", {"API_KEY": "secret-api-key-1234", "WEBHOOK_SECRET": "whsec_s"})
        )

        assert "secret-api-key-1234" not in text
        assert "whsec_s" not in text

    def test_speaks_wavespeed_to_the_local_server(self, mock_http):
        http = mock_http(
            (
                "POST",
                "http://127.0.0.1:8765/api/v3/wavespeed-ai/imagen4?webhook=http%3A%2F%2Ftestserver%2Fhook%2F",
                json_response(200, fixture("wavespeed/submit_created.json")),
            ),
            (
                "GET",
                "http://127.0.0.1:8765/api/v3/webhook/secret",
                json_response(
                    200, {"code": 200, "message": "success", "data": {"secret": "whsec_sb"}}
                ),
            ),
        )
        provider = SandboxProvider("sandbox", {}, client=http.client)

        task = provider.submit(
            GenerationParams(prompt="a mug"),
            idempotency_key="k",
            callback_url="http://testserver/hook/",
        )

        assert task.status is TaskStatus.SUBMITTED
        assert provider.webhook_secrets() == ["whsec_sb"]
        assert http.requests[0].headers["Authorization"] == "Bearer sandbox"

    def test_names_itself_in_errors(self, mock_http):
        http = mock_http(
            (
                "GET",
                "http://127.0.0.1:8765/api/v3/predictions/x/result",
                httpx.ConnectError("refused"),
            )
        )

        with pytest.raises(ProviderError, match=r"^Sandbox: no HTTP answer"):
            SandboxProvider("sandbox", {}, client=http.client).fetch("x")


class MockHTTPTests:
    def test_fails_loudly_on_an_unexpected_request(self):
        http = MockHTTP()

        with pytest.raises(
            AssertionError, match=re.escape("unexpected request #1: GET https://example.com/")
        ):
            http.client.get("https://example.com/")
        with pytest.raises(AssertionError):
            http.assert_done()

    def test_fails_on_a_request_other_than_the_next_expected(self):
        http = MockHTTP(("GET", "https://example.com/a", httpx.Response(200)))

        with pytest.raises(AssertionError, match=re.escape("expected GET https://example.com/a")):
            http.client.post("https://example.com/a")

    def test_fails_when_an_expected_request_is_never_made(self):
        http = MockHTTP(("GET", "https://example.com/a", httpx.Response(200)))

        with pytest.raises(
            AssertionError, match=re.escape("never made: GET https://example.com/a")
        ):
            http.assert_done()

    def test_compares_query_parameters_decoded(self):
        http = MockHTTP(("GET", "https://example.com/a?x=1%202&y=2", httpx.Response(200)))

        http.client.get("https://example.com/a", params={"y": "2", "x": "1 2"})
        http.assert_done()
