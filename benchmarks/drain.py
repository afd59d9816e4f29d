"""Drain a batch: `imagen_generate --count N --wait` with one worker and a slow provider.

Prints the wall time (from starting the command to its exit, Django's start included), the
provider bound (one provider latency: every task runs at once at the provider), their ratio
against its bound (1.3 polling only, 1.2 with webhooks), the status reads per task (median
and mean, bound 3) and the provider calls per image (submits and status reads; with
webhooks bound 2). Real processes throughout: redis-server, the sandbox over HTTP, one
`rqworker --with-scheduler` (the app's worker class), and (with --webhooks) the Django
server receiving callbacks.

Also prints the worker's peak resident memory, its forked work-horses included, against a
256 MiB bound (a small container): complete() decodes up to four images of a task at once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.request import urlopen

from campaigns.settings import imagen_files_root
from campaigns.stack import (
    Postgres,
    Process,
    bench_env,
    free_port,
    manage,
    running,
    start_redis,
    start_sandbox,
    start_web,
)

MiB = 1024  # KiB


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def only_child(pid: int) -> int:
    return int(Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0])


def verdict(met: bool) -> str:
    return "ok" if met else "MISSED"


def status_reads(env: dict[str, str]) -> list[int]:
    """Each task's status reads, from the benchmark's database."""
    script = (
        "from imagen_assets.models import GenerationTask as T;"
        "print(*T.objects.values_list('polls', flat=True))"
    )
    out = subprocess.run(
        manage("shell", "-v", "0", "-c", script),
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [int(n) for n in out.split()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--latency", type=float, default=5.0)
    parser.add_argument(
        "--latency-jitter", type=float, default=0.0, help="up to S s more per task, at random"
    )
    parser.add_argument(
        "--unavailable-rate", type=float, default=0.0, help="share of submits answered 503"
    )
    parser.add_argument("--workers", type=int, default=1, help="rqworker processes")
    parser.add_argument("--provider", default="sandbox")
    parser.add_argument("--aspect-ratio", default="1:1")
    parser.add_argument("--webhooks", action="store_true", help="also run the web server")
    parser.add_argument(
        "--bound", type=float, default=None, help="ratio to the provider bound (1.3; 1.2 webhooks)"
    )
    parser.add_argument(
        "--bound-seconds", type=float, default=None, help="a wall-time bound instead of a ratio"
    )
    parser.add_argument(
        "--memory-bound", type=float, default=256, help="MiB for the worker's peak memory"
    )
    parser.add_argument(
        "--sqlite",
        action="store_true",
        help="a SQLite file instead of a private PostgreSQL (DATABASE_URL, when set, wins)",
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="imagen-bench-"))
    with contextlib.ExitStack() as stack:
        if not args.sqlite and "DATABASE_URL" not in os.environ:
            # As deployed: the workers' threads write at once (SQLite takes one at a time).
            postgres = Postgres(Path(tempfile.mkdtemp(prefix="imagen-pg-"))).start()
            stack.callback(postgres.stop)
            os.environ["DATABASE_URL"] = postgres.url
        return drain(args, work)


def drain(args: argparse.Namespace, work: Path) -> int:
    redis, redis_url = start_redis(work / "redis")
    sandbox_port, web_port = free_port(), free_port()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    env = bench_env(work, redis_url, sandbox_url, "WARNING")
    if args.webhooks:
        env["IMAGEN_WEBHOOK_BASE_URL"] = f"http://127.0.0.1:{web_port}"
    subprocess.run(manage("migrate", "-v", "0"), env=env, check=True)
    processes = [redis]
    with running(redis):
        sandbox = start_sandbox(
            sandbox_port,
            env,
            work / "sandbox.log",
            "--latency",
            str(args.latency),
            "--latency-jitter",
            str(args.latency_jitter),
            "--unavailable-rate",
            str(args.unavailable_rate),
        )
        peak_file = work / "worker-peak-kib"
        worker = Process(
            "worker",
            [sys.executable, "-m", "benchmarks.peak_rss", str(peak_file), "--",
             *manage("rqworker", "--with-scheduler", "default")],
            env,
            work / "worker.log",
        ).start()  # fmt: skip
        others = [
            Process(
                f"worker-{n}",
                manage("rqworker", "--with-scheduler", "default"),
                env,
                work / f"worker-{n}.log",
            ).start()
            for n in range(1, args.workers)
        ]
        processes = [sandbox, worker, *others]
        if args.webhooks:
            processes.append(start_web(web_port, env, work / "web.log"))
        with running(*processes):
            time.sleep(2.0)  # let the worker finish importing Django before the clock starts
            idle_kib = rss_kib(only_child(worker.pid))
            started = time.monotonic()
            # One request takes at most 100 images (MAX_IMAGES_PER_REQUEST): larger batches
            # are asked for by several commands at once, each waiting for its own images.
            sizes = [min(100, args.count - done) for done in range(0, args.count, 100)]
            commands = [
                subprocess.Popen(
                    manage(
                        "imagen_generate",
                        "--campaign",
                        "bench",
                        "--prompt",
                        "benchmark",
                        "--count",
                        str(size),
                        "--provider",
                        args.provider,
                        "--aspect-ratio",
                        args.aspect_ratio,
                        "--wait",
                        "--timeout",
                        "600",
                        "--json",
                    ),
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for size in sizes
            ]
            outputs = [command.communicate() for command in commands]
            elapsed = time.monotonic() - started
            with urlopen(f"{sandbox_url}/_sandbox/stats", timeout=10) as answer:  # noqa: S310
                stats = json.load(answer)
    ok = all(command.returncode == 0 for command in commands)
    lines = [line for stdout, _stderr in outputs for line in stdout.splitlines()]
    tasks = math.ceil(args.count / 4)
    submits = stats["wave_submits"] + stats["wavespeed_submits"]
    reads = stats["wave_polls"] + stats["wavespeed_polls"]
    per_task = status_reads(env)
    root = Path(imagen_files_root(env))
    originals = [p for p in root.rglob("*") if p.is_file() and p.parent.name != "thumbs"]
    ok = ok and submits == tasks and len(originals) == args.count
    mode = "webhooks+polling" if args.webhooks else "polling only"
    if args.bound_seconds:  # a bound on the wall time (docs/reliability.md L2)
        bound, ratio, unit = 1.0, elapsed / args.bound_seconds, f"{args.bound_seconds:g} s"
    else:
        bound = args.bound or (1.2 if args.webhooks else 1.3)
        ratio, unit = elapsed / args.latency, f"{args.latency:.1f} s"
    latency = f"{args.latency:g}-{args.latency + args.latency_jitter:g}"
    print(
        f"drain {args.count} images ({args.provider}, {args.aspect_ratio}), provider latency "
        f"{latency} s, {stats['unavailable']} submits answered 503, {args.workers} "
        f"worker(s), {mode}: {elapsed:.1f} s; against {unit}: ratio "
        f"{ratio:.2f}; bound <= {bound:g}: {verdict(ratio <= bound)}; {submits} submits for "
        f"{tasks} tasks, {len(originals)} files for {args.count} images; "
        f"{'all succeeded' if ok else 'FAILED'} ({len(lines)} images reported)"
    )
    median_reads = statistics.median(per_task) if per_task else 0.0
    calls = (submits + reads) / args.count
    print(
        f"status reads per task: median {median_reads:g}, mean "
        f"{sum(per_task) / max(1, len(per_task)):.2f}; bound <= 3: "
        f"{verdict(median_reads <= 3)}; provider calls per image {calls:.2f} ({submits} "
        f"submits + {reads} reads for {args.count} images)"
        + (f"; bound <= 2: {verdict(calls <= 2)}" if args.webhooks else "")
    )
    ok = ok and ratio <= bound and median_reads <= 3 and (not args.webhooks or calls <= 2)
    peak_mib = int(peak_file.read_text()) / MiB
    print(
        f"worker peak memory (worker and its work-horses): {peak_mib:.0f} MiB; idle worker "
        f"{idle_kib / MiB:.0f} MiB; bound {args.memory_bound:g} MiB: ratio "
        f"{peak_mib / args.memory_bound:.2f}"
    )
    if not ok:
        for _stdout, stderr in outputs:
            print(stderr[-2000:], file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
