"""A local server that speaks both the Wave and the WaveSpeed AI Imagen 4 APIs.

For demos, tests and benchmarks with no API key and no network::

    from imagen_assets.sandbox import SandboxServer, SandboxConfig

    with SandboxServer(SandboxConfig(latency=0.2)) as server:
        ...  # point a client at server.url

Standard library plus Pillow and httpx only: nothing here imports Django, so
``python -m imagen_assets.sandbox`` runs anywhere the package is installed.
"""

from __future__ import annotations

from .config import SandboxConfig
from .server import SandboxServer
from .signing import sign_wavespeed_webhook

__all__ = ["SandboxConfig", "SandboxServer", "sign_wavespeed_webhook"]
