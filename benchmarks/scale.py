"""The scale benchmark: 1,000 images on PostgreSQL and S3 with four workers.

Real processes throughout (``campaigns.stack``): a private PostgreSQL (or ``DATABASE_URL``,
flushed before each run), SeaweedFS as the S3 storage (a new bucket per run), redis-server,
the sandbox over HTTP (WaveSpeed protocol, 1K outputs, latency 5 s, ``--max-concurrency 50
--over-capacity reject``: a submit while 50 tasks are in progress is answered 429), four
``rqworker --with-scheduler`` (the example site's worker class, each under
``benchmarks.peak_rss``) with ``IMAGEN_SANDBOX_MAX_CONCURRENCY=50``, and, with webhooks, the
web server receiving them. 1,000 images, 4 per task (250 tasks), 1:1, asked for by two
``imagen_generate --from-csv --wait --json`` at once, each a batch of 500
(``MAX_IMAGES_PER_BATCH``) in five lines of 100 (``MAX_IMAGES_PER_REQUEST``).
Two runs, each on fresh processes and data: polling only, then webhooks and polling.

Each run prints, with its bound and the ratio to it:

- the wall time (the commands' start to the last one's exit) against the larger of the
  provider bound, ``ceil(tasks / cap) x latency``, and this machine's CPU floor: the CPU
  seconds every process involved spent during that time (sandbox, workers and their work
  horses, web server, PostgreSQL and its backends, SeaweedFS, Redis, the commands, this
  driver), summed, divided by ``os.cpu_count()``;
- status reads (``GenerationTask.polls``) per image and per task, provider calls per image
  (the sandbox's count of submits, refused ones included, and status reads; downloads
  apart), duplicate submits and stored originals (must be 0 and N), the provider's peak of
  tasks in progress and its 429s (0 when the workers keep to the cap);
- the peak resident memory of each worker's tree (the worker and every work horse it
  waited for) and each parent worker's resident memory before and after the batch;
- Redis's ``used_memory`` and ``pg_database_size`` at the end, and the admin at that size
  (images list, grid, review screen, campaigns and requests lists): queries and median time
  per page through ``django.test.Client`` as a superuser, measured as
  ``benchmarks.admin_changelist`` measures them.

Process CPU is read from ``/proc/<pid>/stat`` (its own and its reaped children's time; the
live descendants of each root are read too, so every process counts once), the commands'
from ``getrusage(RUSAGE_CHILDREN)`` once reaped. Linux only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.request import urlopen

from campaigns.stack import (
    Postgres,
    Process,
    SeaweedFS,
    bench_env,
    free_port,
    manage,
    start_redis,
    start_sandbox,
    start_seaweedfs,
    start_web,
    stop_all,
    wait_until,
)

MiB = 1024 * 1024
TICKS = os.sysconf("SC_CLK_TCK")
PER_TASK = 4  # images per task: a request is split into tasks of four
ADMIN_BOUND_MS = 500.0  # benchmarks.admin_changelist's bound per page
S3_KEY = "imagen-bench"
S3_SECRET = "imagen-bench-secret"  # SeaweedFS without identities takes any key

IMAGE_PAGE = "/admin/imagen_assets/generatedimage/"
ADMIN_PAGES = [
    ("images list", IMAGE_PAGE),
    ("images grid", f"{IMAGE_PAGE}?view=grid"),
    ("review screen", f"{IMAGE_PAGE}review/"),
    ("campaigns list", "/admin/imagen_assets/campaign/"),
    ("requests list", "/admin/imagen_assets/generationrequest/"),
]


# -- CPU and memory from /proc -----------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].decode().split()
    except (OSError, IndexError):
        return None


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids, zombies included (their time is in no parent's yet)."""
    below: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                below.setdefault(int(fields[1]), []).append(int(entry))
    return below


def tree_cpu_seconds(root: int, children: dict[int, list[int]]) -> float:
    """CPU seconds of ``root`` and everything below it: for each live (or zombie) process
    its own utime + stime and its reaped children's cutime + cstime. A child that ended was
    reaped by its parent (counted there) or is a zombie (counted itself): once either way."""
    ticks = 0
    todo = [root]
    while todo:
        pid = todo.pop()
        fields = _stat_fields(pid)
        if fields is None:
            continue
        ticks += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
        todo.extend(children.get(pid, []))
    return ticks / TICKS


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def only_child(pid: int) -> int:
    return int(Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0])


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent busy since boot (/proc/stat)."""
    with open("/proc/stat") as stat:
        values = [int(value) for value in stat.readline().split()[1:9]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values) - idle) / TICKS


@dataclass
class CpuMeter:
    """CPU seconds of named process trees, plus the commands and this process, between
    :meth:`start` and :meth:`stop`."""

    roots: dict[str, list[int]]
    before: dict[str, float] = field(default_factory=dict)
    spent: dict[str, float] = field(default_factory=dict)

    def _read(self) -> dict[str, float]:
        children = _children()
        now = {
            name: sum(tree_cpu_seconds(pid, children) for pid in pids)
            for name, pids in self.roots.items()
        }
        own, reaped = (
            resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        )
        now["imagen_generate commands"] = reaped.ru_utime + reaped.ru_stime
        now["this driver"] = own.ru_utime + own.ru_stime
        now["machine"] = machine_busy_seconds()
        return now

    def start(self) -> None:
        self.before = self._read()

    def stop(self) -> None:
        after = self._read()
        self.spent = {name: after[name] - self.before[name] for name in after}

    @property
    def ours(self) -> float:
        return sum(seconds for name, seconds in self.spent.items() if name != "machine")


# -- the parts ---------------------------------------------------------------------------


def postmaster_pid(server: Postgres) -> int:
    return int((server.data / "postmaster.pid").read_text().split()[0])


def s3_client(endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=S3_KEY,
        aws_secret_access_key=S3_SECRET,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
    )


def create_bucket(endpoint: str, name: str) -> None:
    """The gateway's port opens before its filer is ready: retry for a while."""
    client = s3_client(endpoint)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.create_bucket(Bucket=name)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def bucket_keys(endpoint: str, bucket: str) -> list[str]:
    paginator = s3_client(endpoint).get_paginator("list_objects_v2")
    return [
        item["Key"]
        for page in paginator.paginate(Bucket=bucket)
        for item in page.get("Contents", [])
    ]


def redis_used_memory(url: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return int(client.info("memory")["used_memory"])
    finally:
        client.close()


def redis_workers(url: str) -> int:
    """How many RQ workers are registered (RQ keeps them in the set ``rq:workers``)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        return int(client.scard("rq:workers"))
    finally:
        client.close()


def redis_job_counts(url: str) -> tuple[int, int, float]:
    """(jobs done, jobs failed, seconds spent in jobs) over the registered RQ workers, from
    the counters RQ keeps in each worker's hash."""
    import redis

    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        done = failed = 0
        seconds = 0.0
        for key in client.smembers("rq:workers"):
            counts = client.hgetall(key)
            done += int(counts.get("successful_job_count") or 0)
            failed += int(counts.get("failed_job_count") or 0)
            seconds += float(counts.get("total_working_time") or 0)
        return done, failed, seconds
    finally:
        client.close()


def sandbox_stats(url: str) -> dict[str, int]:
    with urlopen(f"{url}/_sandbox/stats", timeout=10) as answer:  # noqa: S310
        return dict(json.load(answer))


@contextmanager
def stopping(processes: list[Process]) -> Iterator[None]:
    try:
        yield
    finally:
        stop_all(processes)


# -- one run -----------------------------------------------------------------------------


@dataclass
class Run:
    mode: str
    images: int
    tasks_expected: int
    wall: float = 0.0
    ok: bool = True
    failures: list[str] = field(default_factory=list)
    cpu: CpuMeter | None = None
    stats: dict[str, int] = field(default_factory=dict)
    inspect: dict[str, Any] = field(default_factory=dict)
    originals: int = 0
    thumbnails: int = 0
    peaks: list[int] = field(default_factory=list)
    worker_rss: list[tuple[int, int]] = field(default_factory=list)
    redis_bytes: int = 0
    jobs: tuple[int, int, float] = (0, 0, 0.0)
    postgres_counted: bool = True


def run_once(args: argparse.Namespace, webhooks: bool) -> Run:
    mode = "webhooks+polling" if webhooks else "polling only"
    result = Run(mode, args.images, math.ceil(args.images / PER_TASK))
    work = Path(tempfile.mkdtemp(prefix="imagen-scale-"))
    with ExitStack() as cleanup:
        external_db = os.environ.get("DATABASE_URL")
        roots: dict[str, list[int]] = {}
        if external_db:
            database_url = external_db
            result.postgres_counted = False
        else:
            # A short path: the Unix socket's name must fit in 107 bytes.
            server = Postgres(Path(tempfile.mkdtemp(prefix="imagen-pg-")))
            cleanup.callback(server.stop)
            server.start()
            database_url = server.url
            roots["postgres"] = [postmaster_pid(server)]
        seaweed: SeaweedFS
        seaweed, endpoint = start_seaweedfs(work / "seaweedfs")
        cleanup.callback(seaweed.stop)
        bucket = f"scale-{os.getpid()}-{int(time.time())}"
        create_bucket(endpoint, bucket)
        redis, redis_url = start_redis(work / "redis")
        cleanup.callback(redis.stop)
        sandbox_port, web_port = free_port(), free_port()
        sandbox_url = f"http://127.0.0.1:{sandbox_port}"
        env = bench_env(work, redis_url, sandbox_url, "WARNING")
        env.update(
            {
                "DATABASE_URL": database_url,
                "IMAGEN_STORAGE": "s3",
                "AWS_STORAGE_BUCKET_NAME": bucket,
                "AWS_S3_ENDPOINT_URL": endpoint,
                "AWS_ACCESS_KEY_ID": S3_KEY,
                "AWS_SECRET_ACCESS_KEY": S3_SECRET,
                "AWS_S3_REGION_NAME": "us-east-1",
                "AWS_S3_ADDRESSING_STYLE": "path",
                # The provider's concurrency cap the workers keep to (across processes).
                "IMAGEN_SANDBOX_MAX_CONCURRENCY": str(args.cap),
            }
        )
        if webhooks:
            env["IMAGEN_WEBHOOK_BASE_URL"] = f"http://127.0.0.1:{web_port}"
        setup = [
            *([manage("flush", "--no-input")] if external_db else []),
            manage("migrate", "-v", "0"),
            manage("shell", "-c", "from imagen_assets.models import Campaign; "
                   "Campaign.objects.get_or_create(slug='scale', defaults={'name': 'scale'})"),
        ]  # fmt: skip
        for argv in setup:
            done = subprocess.run(argv, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"{' '.join(argv[1:3])} failed:\n{done.stderr[-3000:]}")

        processes: list[Process] = []
        cleanup.enter_context(stopping(processes))
        processes.append(
            start_sandbox(
                sandbox_port, env, work / "sandbox.log",
                "--latency", str(args.latency),
                "--max-concurrency", str(args.cap),
                "--over-capacity", "reject",
            )
        )  # fmt: skip
        peak_files = [work / f"worker-{n}-peak-kib" for n in range(args.workers)]
        workers = [
            Process(
                f"worker-{n}",
                [sys.executable, "-m", "benchmarks.peak_rss", str(peak_file), "--",
                 *manage("rqworker", "--with-scheduler", "--worker-class",
                         "imagen_assets.worker.Worker", "default")],
                env,
                work / f"worker-{n}.log",
            ).start()
            for n, peak_file in enumerate(peak_files)
        ]  # fmt: skip
        processes.extend(workers)
        if webhooks:
            processes.append(start_web(web_port, env, work / "web.log"))
        wait_until(lambda: redis_workers(redis_url) >= args.workers, 60, "the workers")
        time.sleep(1.0)  # let the scheduler and the first maintenance settle
        worker_pids = [only_child(worker.pid) for worker in workers]
        rss_before = [rss_bytes(pid) for pid in worker_pids]
        roots.update({p.name: [p.pid] for p in processes if not p.name.startswith("worker")})
        roots["workers and work horses"] = [worker.pid for worker in workers]
        roots["seaweedfs"] = [seaweed.pid]
        roots["redis"] = [redis.pid]
        meter = CpuMeter(roots)

        # Batches of at most MAX_IMAGES_PER_BATCH (500), lines of at most
        # MAX_IMAGES_PER_REQUEST (100): two commands rather than ten, each a Django start.
        csv_files = []
        for first in range(0, args.images, args.per_command):
            size = min(args.per_command, args.images - first)
            rows = [
                f"scale benchmark {first + done},{min(args.per_line, size - done)}"
                for done in range(0, size, args.per_line)
            ]
            csv_files.append(work / f"batch-{first}.csv")
            csv_files[-1].write_text("prompt,count\n" + "\n".join(rows) + "\n")
        meter.start()
        started = time.monotonic()
        commands = [
            subprocess.Popen(
                manage("imagen_generate", "--campaign", "scale", "--from-csv", str(csv_file),
                       "--provider", "sandbox", "--aspect-ratio", "1:1",
                       "--wait", "--timeout", str(args.timeout), "--json"),
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for csv_file in csv_files
        ]  # fmt: skip
        outputs = [command.communicate() for command in commands]
        result.wall = time.monotonic() - started
        meter.stop()
        result.cpu = meter
        result.worker_rss = [
            (before, rss_bytes(pid)) for before, pid in zip(rss_before, worker_pids, strict=True)
        ]
        result.stats = sandbox_stats(sandbox_url)
        result.redis_bytes = redis_used_memory(redis_url)
        result.jobs = redis_job_counts(redis_url)
        keys = bucket_keys(endpoint, bucket)
        result.thumbnails = sum("/thumbs/" in key for key in keys)
        result.originals = len(keys) - result.thumbnails
        for command, (_stdout, stderr) in zip(commands, outputs, strict=True):
            if command.returncode != 0:
                result.ok = False
                result.failures.append(stderr.strip()[-1000:])
        # As deployed: no template debug information (benchmarks.admin_changelist too).
        admin_env = {**env, "DEBUG": "0", "ALLOWED_HOSTS": "testserver", "SECRET_KEY": "scale"}
        inspected = subprocess.run(
            [sys.executable, "-m", "benchmarks.scale", "--inspect",
             "--admin-runs", str(args.admin_runs)],
            env=admin_env,
            capture_output=True,
            text=True,
        )  # fmt: skip
        if inspected.returncode != 0:
            raise SystemExit(f"inspecting the database failed:\n{inspected.stderr[-3000:]}")
        result.inspect = json.loads(inspected.stdout.strip().splitlines()[-1])
        stop_all(processes)
        result.peaks = [
            int(peak_file.read_text()) * 1024 if peak_file.exists() else 0
            for peak_file in peak_files
        ]
    return result


# -- the figures -------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def report(run: Run, args: argparse.Namespace) -> bool:
    """Print one run's figures; True if every bound was met."""
    assert run.cpu is not None
    met = True

    def line(text: str, ok: bool | None = None) -> None:
        nonlocal met
        if ok is not None:
            met = met and ok
            text = f"{text} {verdict(ok)}"
        print(f"scale [{run.mode}] {text}")

    inspect = run.inspect
    tasks = int(inspect["tasks"])
    provider_bound = math.ceil(tasks / args.cap) * args.latency
    cores = os.cpu_count() or 1
    cpu_floor = run.cpu.ours / cores
    larger = max(provider_bound, cpu_floor)
    which = "provider" if provider_bound >= cpu_floor else "CPU floor"
    images_ok = inspect["images_by_status"].get("succeeded", 0)
    line(
        f"{run.images} images in {tasks} tasks, {args.workers} workers, latency "
        f"{args.latency:g} s, cap {args.cap}: {images_ok} succeeded, commands "
        f"{'all exited 0' if run.ok else 'FAILED'}; images by status "
        f"{json.dumps(inspect['images_by_status'], sort_keys=True)}",
        run.ok and images_ok == run.images,
    )
    line(
        f"wall {run.wall:.1f} s; provider bound ceil({tasks}/{args.cap}) x {args.latency:g} s = "
        f"{provider_bound:.1f} s (ratio {run.wall / provider_bound:.2f}); CPU floor "
        f"{run.cpu.ours:.1f} CPU-s / {cores} cores = {cpu_floor:.1f} s (ratio "
        f"{run.wall / cpu_floor:.2f}); bound <= {args.bound:g} x the larger ({which}, "
        f"{larger:.1f} s): ratio {run.wall / larger:.2f}, {run.wall / larger / args.bound:.2f} "
        "of the bound",
        run.wall <= args.bound * larger,
    )
    spent = run.cpu.spent
    parts = ", ".join(
        f"{name} {seconds:.1f}"
        for name, seconds in sorted(spent.items(), key=lambda item: -item[1])
        if name != "machine"
    )
    others = spent["machine"] - run.cpu.ours
    per_image = spent["workers and work horses"] / run.images * 1000
    line(
        f"CPU-s during the run: {parts} (the workers {per_image:.0f} ms per image)"
        f"{'' if run.postgres_counted else ' (PostgreSQL from DATABASE_URL: not counted)'}; "
        f"the whole machine {spent['machine']:.1f} ({max(others, 0):.1f} not ours, "
        f"{spent['machine'] / (run.wall * cores):.0%} of its cores busy): with the other "
        f"load counted too the floor is {spent['machine'] / cores:.1f} s (ratio "
        f"{run.wall * cores / spent['machine']:.2f}); no bound, it tells a busy machine apart"
    )
    done, failed, working = run.jobs
    line(
        f"RQ jobs: {done} done, {failed} failed, {working:.1f} s inside jobs; workers' CPU "
        f"{spent['workers and work horses'] / max(done + failed, 1) * 1000:.0f} ms per job "
        "(fork included); no bound"
    )
    polls, median_polls = int(inspect["polls"]), float(inspect["median_polls"])
    line(
        f"status reads: {polls / run.images:.2f} per image, median {median_polls:g} per task; "
        f"bound <= 3 per task (median): ratio {median_polls / 3:.2f}",
        median_polls <= 3,
    )
    stats = run.stats
    submits = stats["wave_submits"] + stats["wavespeed_submits"]
    refused = (
        stats["over_capacity"]
        + stats["rate_limited"]
        + stats["unavailable"]
        + stats["server_errors"]
    )
    reads = stats["wave_polls"] + stats["wavespeed_polls"]
    calls = (submits + refused + reads) / run.images
    calls_text = (
        f"provider calls: {calls:.2f} per image ({submits} submits, {refused} refused submits, "
        f"{reads} status reads; {stats['downloads']} downloads apart)"
    )
    if run.mode.startswith("webhooks"):
        line(f"{calls_text}; bound <= {args.calls_bound:g}: ratio {calls / args.calls_bound:.2f}",
             calls <= args.calls_bound)  # fmt: skip
    else:
        line(f"{calls_text}; no bound with polling only")
    downloads = stats["downloads"]
    line(
        f"result downloads: {downloads} for {run.images} images ({downloads - run.images} "
        "fetched again: a second complete() run of a task, or a retry); no bound"
    )
    line(
        f"duplicate submits: {submits - tasks} ({submits} submits for {tasks} tasks); must be 0:",
        submits == tasks,
    )
    line(
        f"stored originals in the bucket: {run.originals} for {run.images} images "
        f"({run.thumbnails} thumbnails apart); must be {run.images}:",
        run.originals == run.images,
    )
    line(
        f"provider concurrency: peak {stats['peak_in_progress']} tasks in progress, "
        f"{stats['over_capacity']} submits answered 429 over the cap; cap {args.cap}: ratio "
        f"{stats['peak_in_progress'] / args.cap:.2f}; 429s must be 0:",
        stats["over_capacity"] == 0,
    )
    peak = max(run.peaks) / MiB
    line(
        f"work-horse peak memory (largest of each worker's tree): "
        f"{', '.join(f'{p / MiB:.0f}' for p in run.peaks)} MiB; bound {args.memory_bound:g} MiB: "
        f"ratio {peak / args.memory_bound:.2f}",
        0 < peak <= args.memory_bound,
    )
    drifts = [(end - start) / MiB for start, end in run.worker_rss]
    worst = max(drifts, key=abs)
    line(
        "parent workers' memory start -> end: "
        + ", ".join(f"{s / MiB:.0f} -> {e / MiB:.0f}" for s, e in run.worker_rss)
        + f" MiB; bound within {args.drift_bound:g} MiB: ratio {abs(worst) / args.drift_bound:.2f}",
        abs(worst) <= args.drift_bound,
    )
    line(
        f"Redis used_memory {run.redis_bytes / MiB:.1f} MiB; database "
        f"{int(inspect['database_bytes']) / MiB:.1f} MiB (pg_database_size); no bound"
    )
    for label, queries, median in inspect["admin"]:
        line(
            f"admin {label} ({inspect['images']} images): {queries} queries, median of "
            f"{args.admin_runs} {median:.1f} ms; bound {ADMIN_BOUND_MS:g} ms: ratio "
            f"{median / ADMIN_BOUND_MS:.2f}",
            median <= ADMIN_BOUND_MS,
        )
    for failure in run.failures[:3]:
        print(f"  a command failed: {failure}", file=sys.stderr)
    return met


# -- in a subprocess on the run's database -------------------------------------------------


def inspect(admin_runs: int) -> None:
    """Print (as one JSON line) the database's figures and the admin's pages at this size;
    run with the run's environment (``--inspect``)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "campaigns.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.db.models import Count, Sum
    from django.test import Client

    from benchmarks.admin_changelist import measure
    from imagen_assets.models import Campaign, GeneratedImage, GenerationTask

    polls = list(GenerationTask.objects.values_list("polls", flat=True))
    by_status = dict(
        GeneratedImage.objects.values_list("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database())")
        database_bytes = cursor.fetchone()[0]
    # The review screen lists the images of campaigns in review.
    Campaign.objects.filter(slug="scale").update(status="in_review")
    user = get_user_model().objects.create_superuser("scale", "scale@example.com", "scale")
    client = Client()
    client.force_login(user)
    admin = [[label, *measure(client, url, admin_runs)[:2]] for label, url in ADMIN_PAGES]
    figures = {
        "tasks": len(polls),
        "polls": GenerationTask.objects.aggregate(total=Sum("polls"))["total"] or 0,
        "median_polls": statistics.median(polls) if polls else 0,
        "images": GeneratedImage.objects.count(),
        "images_by_status": by_status,
        "database_bytes": database_bytes,
        "admin": admin,
    }
    print(json.dumps(figures))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument(
        "--per-command", type=int, default=500, help="images per imagen_generate --from-csv"
    )
    parser.add_argument("--per-line", type=int, default=100, help="images per line of a batch")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--latency", type=float, default=5.0)
    parser.add_argument("--cap", type=int, default=50, help="the provider's concurrency cap")
    parser.add_argument("--timeout", type=float, default=240.0, help="each command's --timeout")
    parser.add_argument("--only", choices=("polling", "webhooks"), help="one run, not both")
    parser.add_argument("--bound", type=float, default=1.3, help="wall / the larger bound")
    parser.add_argument("--calls-bound", type=float, default=2.0, help="per image, webhooks on")
    parser.add_argument("--memory-bound", type=float, default=256, help="MiB, a work horse")
    parser.add_argument("--drift-bound", type=float, default=20, help="MiB, a parent worker")
    parser.add_argument("--admin-runs", type=int, default=5)
    parser.add_argument("--inspect", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inspect:
        inspect(args.admin_runs)
        return 0
    modes = {"polling": [False], "webhooks": [True], None: [False, True]}[args.only]
    began = time.monotonic()
    met = True
    for webhooks in modes:
        met = report(run_once(args, webhooks), args) and met
    bounds = (
        f"wall <= {args.bound:g} x max(provider bound, CPU floor), 0 duplicate submits, "
        f"{args.images} originals, 0 429s, median status reads <= 3 per task, provider calls "
        f"<= {args.calls_bound:g} per image with webhooks, work horses <= "
        f"{args.memory_bound:g} MiB, parent workers within {args.drift_bound:g} MiB, admin "
        f"pages <= {ADMIN_BOUND_MS:g} ms"
    )
    print(
        f"scale: {'every bound met' if met else 'BOUNDS MISSED'} ({bounds}); "
        f"{len(modes)} run(s) in {time.monotonic() - began:.0f} s, setup included"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
