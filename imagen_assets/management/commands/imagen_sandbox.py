"""``manage.py imagen_sandbox``: run the sandbox provider server (same flags as
``python -m imagen_assets.sandbox``)."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from imagen_assets.sandbox.cli import add_arguments, config_from_options, run


class Command(BaseCommand):
    help = (
        "Run a local server that speaks the Wave and WaveSpeed Imagen 4 APIs, "
        "for demos and tests without an API key."
    )
    # The sandbox uses no Django setting; a half-configured project must still be able to
    # start it (e.g. to fix that configuration against it).
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            config = config_from_options(options)
        except ValueError as error:
            raise CommandError(str(error)) from error

        def write(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()  # the banner must show up even when stdout is a pipe

        try:
            run(config, options["host"], options["port"], write=write)
        except OSError as error:
            raise CommandError(
                f"cannot listen on {options['host']}:{options['port']}: {error}"
            ) from error
