"""Command line of the sandbox, shared by ``python -m imagen_assets.sandbox`` and
``manage.py imagen_sandbox``.

The flags are defined once (:func:`add_arguments`) and turned into a config once
(:func:`config_from_options`); both entry points call these and :func:`run`.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from types import FrameType
from typing import Any

from .config import (
    IMAGE_FORMATS,
    OVER_CAPACITY_CHOICES,
    WAVE_PROGRESS_STYLES,
    WAVE_TIMESTAMP_UNITS,
    WAVE_URL_STYLES,
    SandboxConfig,
)
from .server import SandboxServer

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
# Field defaults, for help texts (instantiating a config would mint a secret).
_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(SandboxConfig)}


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not between 0 and 1")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every sandbox flag to ``parser``.

    Knob flags default to None, meaning "use the SandboxConfig default", so
    :func:`config_from_options` can tell "not given" from "given".
    """
    d = _DEFAULTS
    add = parser.add_argument
    add("--host", default=DEFAULT_HOST, help=f"interface to bind (default {DEFAULT_HOST})")
    add(
        "--port", type=int, default=DEFAULT_PORT, help=f"0 = any free port (default {DEFAULT_PORT})"
    )
    add(
        "--latency",
        type=_non_negative_float,
        metavar="S",
        help=f"seconds from start to finish of a task (default {d['latency']})",
    )
    add(
        "--latency-jitter",
        type=_non_negative_float,
        metavar="S",
        help="up to S seconds added at random to each task's latency (default 0)",
    )
    add(
        "--failure-rate",
        type=_fraction,
        metavar="F",
        help="fraction of tasks that fail (default 0); a prompt with [fail] always fails",
    )
    add(
        "--filter-rate",
        type=_fraction,
        metavar="F",
        help="fraction of tasks losing their last image (default 0); [filter] in a prompt too",
    )
    add(
        "--rate-limit-rate",
        type=_fraction,
        metavar="F",
        help="fraction of submits answered 429 with Retry-After: 1 (default 0)",
    )
    add(
        "--unavailable-rate",
        type=_fraction,
        metavar="F",
        help="fraction of submits answered 503 (default 0)",
    )
    add(
        "--rate-limit-next",
        type=_non_negative_int,
        metavar="N",
        help="answer the next N submits with 429",
    )
    add(
        "--server-error-next",
        type=_non_negative_int,
        metavar="N",
        help="answer the next N submits with 500",
    )
    add(
        "--drop-callbacks",
        action="store_true",
        default=None,
        help="never deliver callbacks or webhooks",
    )
    add(
        "--duplicate-callbacks",
        action="store_true",
        default=None,
        help="deliver every callback or webhook twice",
    )
    add(
        "--out-of-order",
        action="store_true",
        default=None,
        help="follow each terminal callback with a stale one",
    )
    add(
        "--max-concurrency",
        type=_non_negative_int,
        metavar="N",
        help="tasks in progress at once (default 0 = unlimited); see --over-capacity",
    )
    add(
        "--over-capacity",
        choices=OVER_CAPACITY_CHOICES,
        help="beyond --max-concurrency, a task waits queued or its submit is answered 429 "
        f"(default {d['over_capacity']})",
    )
    add(
        "--api-key",
        metavar="K",
        help="the only accepted Bearer token (default: any non-empty token)",
    )
    add(
        "--webhook-secret",
        metavar="S",
        help="whsec_... secret for WaveSpeed webhooks (default: random per run)",
    )
    add(
        "--sync-timeout",
        type=_non_negative_float,
        metavar="S",
        help=f"WaveSpeed sync-mode wait before code 5004 (default {d['sync_timeout']:g})",
    )
    add(
        "--wave-progress-style",
        choices=WAVE_PROGRESS_STYLES,
        help=f"Wave progress as int or 'NN%%' (default {d['wave_progress_style']})",
    )
    add(
        "--wave-timestamps",
        choices=WAVE_TIMESTAMP_UNITS,
        help=f"Wave timestamps in ms or s (default {d['wave_timestamps']})",
    )
    add(
        "--wave-url-style",
        choices=WAVE_URL_STYLES,
        help=f"Wave result url as list or string (default {d['wave_url_style']})",
    )
    add(
        "--image-format",
        choices=IMAGE_FORMATS,
        help=f"format of served images (default {d['image_format']})",
    )
    add("--verbose", action="store_true", default=None, help="log every request to stderr")


def config_from_options(options: Mapping[str, Any]) -> SandboxConfig:
    """Build a SandboxConfig from parsed options (``vars(namespace)`` or Django's
    ``**options``); keys that are not knobs (host, port, Django's own) are ignored, and
    None means "default". Raises ``ValueError`` for an invalid combination."""
    names = {f.name for f in fields(SandboxConfig)}
    given = {k: v for k, v in options.items() if k in names and v is not None}
    return SandboxConfig(**given)


def banner(server: SandboxServer) -> str:
    """The one line printed when the server is up."""
    latency = float(server.config.latency)
    return f"imagen-assets sandbox listening on {server.url} (latency {latency} s)"


def run(config: SandboxConfig, host: str, port: int, write: Callable[[str], Any] = print) -> None:
    """Serve until Ctrl-C or SIGTERM, after writing the banner line with ``write``.

    Raises ``OSError`` if the address cannot be bound (e.g. the port is taken).
    """
    server = SandboxServer(config, host=host, port=port)
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (docker stop, process managers) ends the server like Ctrl-C does.
        def _terminate(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, _terminate)
    # The interrupt may land anywhere, even before serve_forever() is reached.
    try:
        server.start()
        write(banner(server))
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m imagen_assets.sandbox",
        description="Local server speaking the Wave and WaveSpeed Imagen 4 APIs (sandbox).",
    )
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m imagen_assets.sandbox``; returns the exit status."""
    parser = build_parser()
    options = vars(parser.parse_args(argv))
    try:
        config = config_from_options(options)
    except ValueError as error:
        parser.error(str(error))
    try:
        run(config, options["host"], options["port"], write=lambda line: print(line, flush=True))
    except OSError as error:
        parser.exit(1, f"cannot listen on {options['host']}:{options['port']}: {error}\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
