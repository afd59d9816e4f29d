"""`python -m benchmarks` (`make bench`): run every benchmark once with its defaults."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = [
    ["benchmarks.complete"],
    ["benchmarks.decode_memory"],
    ["benchmarks.drain"],
    ["benchmarks.drain", "--webhooks"],
    # Wave's protocol with its 2K outputs, webhooks on (the "also report").
    ["benchmarks.drain", "--provider", "wave", "--webhooks"],
    # docs/reliability.md L2: 500 images, 2 workers, 100-500 ms latency, 5 % of submits 503.
    [
        "benchmarks.drain",
        "--count",
        "500",
        "--workers",
        "2",
        "--latency",
        "0.1",
        "--latency-jitter",
        "0.4",
        "--unavailable-rate",
        "0.05",
        "--bound-seconds",
        "120",
    ],
    ["benchmarks.webhooks"],
    # docs/reliability.md L1: 50 concurrent senders for 30 s, 20 % re-sent ids.
    ["benchmarks.webhooks", "--clients", "50", "--duration", "30", "--requests", "20000"],
    ["benchmarks.admin_changelist"],
    ["benchmarks.export"],
    ["benchmarks.calls"],
    ["benchmarks.sweep"],
    ["benchmarks.recovery"],
]

failed = 0
for argv in BENCHMARKS:
    failed += subprocess.run([sys.executable, "-m", *argv[:1], *argv[1:]]).returncode != 0
sys.exit(1 if failed else 0)
