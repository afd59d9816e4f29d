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
    # Issue 9: runserver, then gunicorn, on PostgreSQL with the same load (16 keep-alive
    # clients, 20 % re-sent ids): gunicorn >= 4x runserver's req/s and >= 500 req/s, p99
    # < 100 ms, 0 errors.
    ["benchmarks.webhooks"],
    # docs/reliability.md L1: 50 concurrent senders for 30 s, 20 % re-sent ids, against
    # gunicorn; p99 within the W1 target (1 s), 0 errors (no bound on req/s here).
    [
        "benchmarks.webhooks",
        "--servers",
        "gunicorn",
        "--clients",
        "50",
        "--duration",
        "30",
        "--requests",
        "40000",
        "--p99-ms",
        "1000",
        "--min-rate",
        "0",
    ],
    ["benchmarks.admin_changelist"],
    ["benchmarks.export"],
    ["benchmarks.calls"],
    ["benchmarks.sweep"],
    ["benchmarks.recovery"],
    # Issue 9: 1,000 images, 4 workers, PostgreSQL + S3, cap 50; polling, then webhooks.
    ["benchmarks.scale"],
]

failed = 0
for argv in BENCHMARKS:
    failed += subprocess.run([sys.executable, "-m", *argv[:1], *argv[1:]]).returncode != 0
sys.exit(1 if failed else 0)
