"""Result host patterns (docs/reliability.md D1): what each form matches, what is refused,
and where each provider's list comes from."""

from __future__ import annotations

import pytest

from imagen_assets import hosts
from imagen_assets.hosts import ResultHosts
from imagen_assets.providers.sandbox import SandboxProvider
from imagen_assets.providers.wave import WaveProvider
from imagen_assets.providers.wavespeed import WaveSpeedProvider


class MatchTests:
    @pytest.mark.parametrize(
        ("host", "pattern"),
        [
            ("cdn.qingbo.dev", "cdn.qingbo.dev"),
            ("CDN.Qingbo.DEV.", "cdn.qingbo.dev"),
            ("qingbo.dev", ".qingbo.dev"),
            ("cdn.qingbo.dev", ".qingbo.dev"),
            ("a.b.wavespeed.ai", "*.wavespeed.ai"),
            ("127.0.0.1", "127.0.0.1"),
            ("::1", "[::1]"),
            ("anything.example", "*"),
        ],
    )
    def test_matches(self, host, pattern):
        assert hosts.matches(host, pattern)

    @pytest.mark.parametrize(
        ("host", "pattern"),
        [
            ("evil.test", "cdn.qingbo.dev"),
            ("cdn.qingbo.dev.evil.test", "cdn.qingbo.dev"),
            ("evilqingbo.dev", ".qingbo.dev"),
            ("wavespeed.ai", "*.wavespeed.ai"),  # subdomains only
            ("notwavespeed.ai", "*.wavespeed.ai"),
            ("127.0.0.2", "127.0.0.1"),
            ("", "*"),
        ],
    )
    def test_does_not_match(self, host, pattern):
        assert not hosts.matches(host, pattern)

    @pytest.mark.parametrize(
        "pattern",
        ["cdn.qingbo.dev", ".wavespeed.ai", "*.wavespeed.ai", "127.0.0.1", "::1", "[::1]", "*"],
    )
    def test_valid_patterns(self, pattern):
        assert hosts.problem(pattern) is None

    @pytest.mark.parametrize(
        "pattern",
        [
            "",
            "https://cdn.qingbo.dev",
            "cdn.qingbo.dev/output",
            "cdn.qingbo.dev:443",
            "cdn.*.dev",
            "**.dev",
            "*.dev",
            ".dev",
            "bad_name.example",
            "-bad.example",
            42,
            None,
        ],
    )
    def test_malformed_patterns(self, pattern):
        assert hosts.problem(pattern)


class ProviderResultHostsTests:
    def test_wave_defaults_are_its_own_domains_plus_its_api_host(self):
        allowed = WaveProvider("wave", {"API_KEY": "k"}).result_hosts()

        assert allowed.allows("cdn.qingbo.dev")  # the docs' example
        assert allowed.allows("www.qingbo.dev")
        assert not allowed.allows("evil.test")
        assert "['wave']['OPTIONS']['RESULT_HOSTS']" in allowed.setting

    def test_wavespeed_defaults_take_the_documented_hosts_and_no_other_cloudfront(self):
        allowed = WaveSpeedProvider("wavespeed", {"API_KEY": "k"}).result_hosts()

        assert allowed.allows("d2p7pge43lyniu.cloudfront.net")
        assert allowed.allows("cdn.wavespeed.ai")
        assert not allowed.allows("someone-else.cloudfront.net")

    def test_the_sandbox_serves_from_its_own_host(self):
        sandbox = SandboxProvider("sandbox", {"BASE_URL": "http://127.0.0.1:9123"})

        assert sandbox.result_hosts().patterns == ("127.0.0.1",)
        assert not sandbox.result_hosts().allows("d2p7pge43lyniu.cloudfront.net")

    def test_configured_hosts_replace_the_defaults_and_keep_the_api_host(self):
        provider = WaveSpeedProvider("ws", {"API_KEY": "k", "RESULT_HOSTS": ["files.example.com"]})

        assert provider.result_hosts() == ResultHosts(
            ("files.example.com", "api.wavespeed.ai"),
            "IMAGEN_ASSETS['PROVIDERS']['ws']['OPTIONS']['RESULT_HOSTS']",
        )
