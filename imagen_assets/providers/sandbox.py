"""The built-in sandbox, spoken to through WaveSpeed's protocol."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from imagen_assets.providers.wavespeed import WaveSpeedProvider


class SandboxProvider(WaveSpeedProvider):
    """The local sandbox server (``imagen_assets.sandbox``), for demos and tests.

    It speaks WaveSpeed's API (submit, result, signed webhooks, the secret endpoint), costs
    nothing and needs no real key. Its images are generated locally and plainly marked as
    sandbox output, so they are never mistaken for real campaign images.
    """

    display_name = "Sandbox"
    default_options: ClassVar[Mapping[str, Any]] = {
        **WaveSpeedProvider.default_options,
        "BASE_URL": "http://127.0.0.1:8765",
        "API_KEY": "sandbox",
        "PRICE_PER_IMAGE": "0",
    }
    # Its images are served from its own host (BASE_URL's, always allowed).
    result_hosts_default: ClassVar[tuple[str, ...]] = ()
    required_options = frozenset()
    local_only = True
