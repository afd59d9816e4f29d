"""`python -m benchmarks` (`make bench`): run every benchmark once with its defaults."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = [
    ["benchmarks.complete"],
    ["benchmarks.drain"],
    ["benchmarks.drain", "--webhooks"],
    ["benchmarks.drain", "--provider", "wave"],
    ["benchmarks.webhooks"],
    ["benchmarks.admin_changelist"],
    ["benchmarks.export"],
    ["benchmarks.recovery"],
]

failed = 0
for argv in BENCHMARKS:
    failed += subprocess.run([sys.executable, "-m", *argv[:1], *argv[1:]]).returncode != 0
sys.exit(1 if failed else 0)
