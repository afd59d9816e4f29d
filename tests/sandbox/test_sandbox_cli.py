"""The shared command line: flag parsing, ``python -m imagen_assets.sandbox`` and
``manage.py imagen_sandbox`` (both run as real subprocesses and stopped with SIGTERM)."""

from __future__ import annotations

import argparse
import os
import re
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from imagen_assets.sandbox import SandboxConfig
from imagen_assets.sandbox.cli import add_arguments, config_from_options

ROOT = Path(__file__).resolve().parents[2]
BANNER = re.compile(
    r"^imagen-assets sandbox listening on (http://127\.0\.0\.1:\d+) \(latency ([\d.]+) s\)$"
)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


class TestFlags:
    def test_every_flag_reaches_the_config(self):
        options = parse(
            "--latency", "0.5",
            "--failure-rate", "0.1",
            "--filter-rate", "0.2",
            "--rate-limit-rate", "0.3",
            "--rate-limit-next", "2",
            "--server-error-next", "1",
            "--drop-callbacks",
            "--duplicate-callbacks",
            "--out-of-order",
            "--max-concurrency", "3",
            "--api-key", "sk-1",
            "--webhook-secret", "whsec_abc",
            "--sync-timeout", "5",
            "--wave-progress-style", "percent",
            "--wave-timestamps", "s",
            "--wave-url-style", "string",
            "--image-format", "png",
            "--verbose",
        )  # fmt: skip

        config = config_from_options(vars(options))

        assert config == SandboxConfig(
            latency=0.5,
            failure_rate=0.1,
            filter_rate=0.2,
            rate_limit_rate=0.3,
            rate_limit_next=2,
            server_error_next=1,
            drop_callbacks=True,
            duplicate_callbacks=True,
            out_of_order=True,
            max_concurrency=3,
            api_key="sk-1",
            webhook_secret="whsec_abc",
            sync_timeout=5,
            wave_progress_style="percent",
            wave_timestamps="s",
            wave_url_style="string",
            image_format="png",
            verbose=True,
        )
        assert (options.host, options.port) == ("127.0.0.1", 8765)

    def test_no_flags_give_the_config_defaults(self):
        config = config_from_options(vars(parse()))
        defaults = SandboxConfig()

        assert config.latency == defaults.latency == 2.0
        assert config.drop_callbacks is False
        assert config.wave_progress_style == "int"
        assert config.webhook_secret.startswith("whsec_")

    @pytest.mark.parametrize(
        "argv",
        [
            ["--failure-rate", "1.5"],
            ["--latency", "-1"],
            ["--wave-url-style", "dict"],
            ["--max-concurrency", "-2"],
        ],
    )
    def test_out_of_range_flags_are_rejected(self, argv, capsys):
        with pytest.raises(SystemExit):
            parse(*argv)

    def test_invalid_webhook_secret_is_a_config_error(self):
        with pytest.raises(ValueError, match="webhook_secret"):
            config_from_options(vars(parse("--webhook-secret", "plain")))


@contextmanager
def running(argv: list[str]) -> Iterator[tuple[str, str]]:
    """Start a sandbox subprocess, yield (url, banner), then SIGTERM it and check it exits 0."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stderr is not None
    try:
        # Never block forever on a server that fails to print its banner.
        ready, _, _ = select.select([process.stdout], [], [], 15)
        line = process.stdout.readline().strip() if ready else ""
        match = BANNER.match(line)
        if match is None:
            process.kill()
            pytest.fail(f"no banner (got {line!r}); stderr: {process.stderr.read()}")
        yield match.group(1), line
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_module_entry_point_serves_until_sigterm() -> None:
    argv = [sys.executable, "-m", "imagen_assets.sandbox", "--port", "0", "--latency", "0.05"]
    with running(argv) as (url, banner):
        assert banner.endswith("(latency 0.05 s)")
        assert httpx.get(f"{url}/healthz", trust_env=False).json() == {"ok": True}
        body = {"model": "imagen-4.0", "prompt": "p"}
        response = httpx.post(
            f"{url}/v1/tasks",
            json=body,
            headers={"Authorization": "Bearer t", "Prefer": "wait=5"},
            trust_env=False,
        )
        assert response.json()["status"] == "completed"


def test_management_command_takes_the_same_flags() -> None:
    pytest.importorskip("django")
    # A bare Django configuration is enough: the command uses no setting.
    script = (
        "import django, sys\n"
        "from django.conf import settings\n"
        "settings.configure()\n"
        "django.setup()\n"
        "from django.core.management import load_command_class\n"
        "command = load_command_class('imagen_assets', 'imagen_sandbox')\n"
        "command.run_from_argv(['manage.py', 'imagen_sandbox'] + sys.argv[1:])\n"
    )
    argv = [
        sys.executable, "-c", script,
        "--port", "0", "--latency", "0.25", "--wave-progress-style", "percent", "--out-of-order",
    ]  # fmt: skip
    with running(argv) as (url, banner):
        assert banner.endswith("(latency 0.25 s)")
        shown = httpx.get(f"{url}/_sandbox/config", trust_env=False).json()
        assert shown["wave_progress_style"] == "percent"
        assert shown["out_of_order"] is True
