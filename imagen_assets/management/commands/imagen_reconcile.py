"""``manage.py imagen_reconcile``: repair rows stuck in a non-terminal state."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from imagen_assets import jobs, queueing


class Command(BaseCommand):
    help = (
        "Queue the job each stuck task or image needs (submit, poll, complete). "
        "With --schedule, also start the reconciler's own periodic run on the queue."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--schedule",
            action="store_true",
            help="Keep a reconcile job scheduled every RECONCILE_INTERVAL seconds.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        counts = jobs.reconcile()
        self.stdout.write(
            "Queued: " + ", ".join(f"{count} {name}" for name, count in counts.items())
        )
        if options["schedule"]:
            if queueing.schedule_reconciler():
                self.stdout.write("The reconciler will run periodically on the queue.")
            elif queueing.reconciler_scheduled():
                self.stdout.write("The reconciler already runs periodically on the queue.")
            else:
                self.stderr.write("Could not schedule the reconciler: is Redis reachable?")
