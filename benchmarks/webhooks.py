"""The WaveSpeed webhook endpoint under load: requests/s and latency percentiles.

Real processes: a private redis-server and the Django server (`runserver --noreload`,
threaded) on 127.0.0.1, with a temporary SQLite database (or `DATABASE_URL` from the
environment, e.g. PostgreSQL). N running WaveSpeed tasks are created, then pre-signed
`completed` webhooks for them are posted from concurrent keep-alive clients, a share of them
re-sent with the same `webhook-id` as the provider does when it retries. No worker runs: the
endpoint only stores the event and queues its processing.

Prints requests/s, p50/p99 latency, the non-2xx and 5xx counts, whether the stored events
match the distinct ids, and p99 against the docs/reliability.md W1 target (1 s). Exits non-zero on
any non-2xx answer or a count mismatch.

runserver (wsgiref) writes the status line, headers and body in separate small sends, so
on a keep-alive connection each answer waits ~40 ms for the client's delayed ACK: p50
here is mostly that stall, not the handler (about 4-5 ms per request one at a time with
`--connection-close`). With `--connection-close` runserver starts a thread per connection
and, with the site's CONN_MAX_AGE=60, each leaves its PostgreSQL connection open until it
is garbage-collected: with 16 clients on PostgreSQL that mode exhausts `max_connections`
and answers 500.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from campaigns.stack import free_port, running, start_redis, start_web

SECRET = "whsec_benchmark-webhook-secret"
UNUSED_ORIGIN = "http://127.0.0.1:9"  # nothing is fetched from the provider in this run


@dataclass
class Delivery:
    event_id: str
    body: bytes
    headers: dict[str, str]


@dataclass
class Results:
    latencies: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    duplicates: int = 0
    sent: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "campaigns.settings")
    import django

    django.setup()


def create_tasks(count: int, run: str) -> list[str]:
    """``count`` WaveSpeed tasks being processed, one image each; their provider task ids."""
    from django.db import connection, transaction

    from imagen_assets.models import Campaign, GeneratedImage, GenerationTask

    ids = [f"{run}-task-{i}" for i in range(count)]
    with transaction.atomic():
        campaign = Campaign.objects.create(name=f"Webhook bench {run}", slug=f"bench-{run}")
        tasks = GenerationTask.objects.bulk_create(
            [
                GenerationTask(
                    campaign=campaign,
                    provider="wavespeed",
                    model="wavespeed-ai/imagen4",
                    prompt="benchmark",
                    aspect_ratio="1:1",
                    num_images=1,
                    provider_task_id=task_id,
                    status=GenerationTask.Status.PROCESSING,
                    attempts=1,
                )
                for task_id in ids
            ],
            batch_size=500,
        )
        if any(task.pk is None for task in tasks):  # a backend that returns no ids
            tasks = list(GenerationTask.objects.filter(provider_task_id__in=ids))
        GeneratedImage.objects.bulk_create(
            [
                GeneratedImage(
                    task=task,
                    campaign=campaign,
                    index=0,
                    status=GeneratedImage.Status.PROCESSING,
                )
                for task in tasks
            ],
            batch_size=500,
        )
    connection.close()
    return ids


def remove_run(run: str) -> None:
    from imagen_assets.models import Campaign, WebhookEvent

    WebhookEvent.objects.filter(provider="wavespeed", event_id__startswith=f"{run}-").delete()
    Campaign.objects.filter(slug=f"bench-{run}").delete()  # its tasks and images cascade


def signed(event_id: str, task_id: str) -> Delivery:
    """A `completed` webhook as WaveSpeed sends it (the bare prediction), signed now."""
    from imagen_assets.sandbox.signing import sign_wavespeed_webhook

    body = json.dumps(
        {
            "id": task_id,
            "model": "wavespeed-ai/imagen4",
            "outputs": [f"{UNUSED_ORIGIN}/files/{task_id}.jpeg"],
            "urls": {"get": f"{UNUSED_ORIGIN}/api/v3/predictions/{task_id}/result"},
            "has_nsfw_contents": [False],
            "status": "completed",
            "created_at": "2025-01-01T00:00:00.000000000Z",
            "error": "",
            "timings": {"inference": 2000},
            "input": {"prompt": "benchmark", "aspect_ratio": "1:1"},
            "executionTime": 2000,
        }
    ).encode()
    timestamp = int(time.time())
    return Delivery(
        event_id,
        body,
        {
            "content-type": "application/json",
            "webhook-id": event_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign_wavespeed_webhook(SECRET, event_id, timestamp, body),
        },
    )


def plan(task_ids: list[str], requests: int, duplicates: float, run: str) -> list[Delivery]:
    """``requests`` deliveries: one per distinct event, and re-sends of earlier ones placed
    within the next ~200 deliveries after their first (some land while the first is still
    in flight), so any prefix of the plan (a --duration run) has the same share of re-sends."""
    rng = random.Random(1)
    distinct = round(requests * (1 - duplicates))
    originals = [signed(f"{run}-msg-{i}", task_ids[i % len(task_ids)]) for i in range(distinct)]
    keyed: list[tuple[float, Delivery]] = [(float(i), d) for i, d in enumerate(originals)]
    for _ in range(requests - distinct):
        first = rng.randrange(distinct)
        keyed.append((first + 0.5 + rng.random() * 200, originals[first]))
    keyed.sort(key=lambda item: item[0])
    return [delivery for _key, delivery in keyed]


def client_thread(
    url: str,
    work: queue.SimpleQueue[Delivery | None],
    warmup: Delivery,
    ready: threading.Barrier,
    results: Results,
    close: bool,
    stop_at: list[float],
) -> None:
    headers = {"connection": "close"} if close else {}
    with httpx.Client(timeout=30.0, headers=headers) as client:
        try:
            client.post(url, content=warmup.body, headers=warmup.headers).raise_for_status()
        except httpx.HTTPError as exc:
            with results.lock:
                results.errors.append(f"warm-up: {exc!r}")
        ready.wait()
        latencies: list[float] = []
        statuses: list[int] = []
        duplicates = 0
        sent: set[str] = set()
        errors: list[str] = []
        while (delivery := work.get()) is not None:
            if time.monotonic() > stop_at[0]:
                break  # --duration is up: the deliveries left are not sent
            sent.add(delivery.event_id)
            started = time.perf_counter()
            try:
                response = client.post(url, content=delivery.body, headers=delivery.headers)
            except httpx.HTTPError as exc:
                errors.append(f"{delivery.event_id}: {exc!r}")
                statuses.append(0)
                continue
            latencies.append(time.perf_counter() - started)
            statuses.append(response.status_code)
            if response.status_code == 200 and response.json().get("duplicate"):
                duplicates += 1
            elif response.status_code >= 300 and len(errors) < 5:
                text = " ".join(response.text.split())[:200]
                errors.append(f"{delivery.event_id}: {response.status_code} {text}")
    with results.lock:
        results.latencies += latencies
        results.statuses += statuses
        results.duplicates += duplicates
        results.sent |= sent
        results.errors += errors


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument(
        "--duration",
        type=float,
        default=0.0,
        help="stop sending after this many seconds (L1: 30 s; plan --requests beyond it)",
    )
    parser.add_argument("--duplicates", type=float, default=0.2, help="share of re-sends")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--tasks", type=int, default=1600)
    parser.add_argument(
        "--connection-close",
        action="store_true",
        help="a new connection per request (see above; not on PostgreSQL)",
    )
    parser.add_argument("--bound-ms", type=float, default=1000.0, help="p99 target (W1)")
    args = parser.parse_args()

    shared_database = "DATABASE_URL" in os.environ
    work = Path(tempfile.mkdtemp(prefix="imagen-bench-"))
    redis, redis_url = start_redis(work / "redis")
    with running(redis):
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": os.environ.get("DATABASE_URL", f"sqlite:///{work / 'db.sqlite3'}"),
            "REDIS_URL": redis_url,
            "MEDIA_ROOT": str(work / "media"),
            "DEBUG": "0",
            "SECRET_KEY": "benchmark-only",
            "ALLOWED_HOSTS": "127.0.0.1",
            "IMAGEN_SANDBOX_URL": UNUSED_ORIGIN,
            "IMAGEN_WAVE_API_KEY": "bench",
            "IMAGEN_WAVESPEED_API_KEY": "bench",
            "IMAGEN_WAVESPEED_BASE_URL": UNUSED_ORIGIN,
            "IMAGEN_WAVESPEED_WEBHOOK_SECRET": SECRET,
            "IMAGEN_WEBHOOK_BASE_URL": f"http://127.0.0.1:{port}",
            "IMAGEN_LOG_LEVEL": "WARNING",
        }
        setup_django(env)
        from django.core.management import call_command
        from django.db import connection

        call_command("migrate", verbosity=0)
        connection.close()
        run = uuid.uuid4().hex[:12]  # keeps this run's rows apart in a shared database
        task_ids = create_tasks(args.tasks, run)
        deliveries = plan(task_ids, args.requests, args.duplicates, run)
        warmups = [signed(f"{run}-warmup-{i}", task_ids[i]) for i in range(args.clients)]

        web = start_web(port, env, work / "web.log")
        with running(web):
            url = f"http://127.0.0.1:{port}/imagen/webhooks/wavespeed/"
            todo: queue.SimpleQueue[Delivery | None] = queue.SimpleQueue()
            for delivery in deliveries:
                todo.put(delivery)
            for _ in range(args.clients):
                todo.put(None)
            results = Results()
            ready = threading.Barrier(args.clients + 1, timeout=60)
            stop_at = [float("inf")]  # set when the clock starts
            threads = [
                threading.Thread(
                    target=client_thread,
                    args=(url, todo, warmups[i], ready, results, args.connection_close, stop_at),
                )
                for i in range(args.clients)
            ]
            for thread in threads:
                thread.start()
            ready.wait()
            started = time.monotonic()
            if args.duration > 0:
                stop_at[0] = started + args.duration
            for thread in threads:
                thread.join()
            elapsed = time.monotonic() - started

        from imagen_assets.models import WebhookEvent
        from imagen_assets.queueing import get_queue

        rows = WebhookEvent.objects.filter(
            provider="wavespeed", event_id__startswith=f"{run}-"
        ).count()
        queued = get_queue().count
        if shared_database:  # leave it as it was
            remove_run(run)
        connection.close()

    sent = len(results.statuses)
    # With --duration, only what was sent counts: its distinct ids plus the warm-ups.
    distinct = len(results.sent) + len(warmups)
    resent = sent - len(results.sent)
    non_2xx = sum(1 for status in results.statuses if not 200 <= status < 300)
    server_errors = sum(1 for status in results.statuses if status >= 500)
    p50 = percentile(results.latencies, 0.50) * 1000 if results.latencies else float("nan")
    p99 = percentile(results.latencies, 0.99) * 1000 if results.latencies else float("nan")
    mean = statistics.fmean(results.latencies) * 1000 if results.latencies else float("nan")
    ok = (
        not results.errors
        and non_2xx == 0
        and server_errors == 0
        and (args.duration > 0 or sent == args.requests)
        and rows == distinct
        and queued == distinct
    )
    backend = "postgresql" if "postgres" in env["DATABASE_URL"] else "sqlite"
    print(
        f"webhooks {sent} signed WaveSpeed POSTs ({resent} re-sent ids), "
        f"{args.clients} {'connection: close' if args.connection_close else 'keep-alive'} "
        f"clients, runserver + {backend}: "
        f"{sent / elapsed:.0f} req/s ({elapsed:.1f} s); p50 {p50:.1f} ms, p99 "
        f"{p99:.1f} ms, mean {mean:.1f} ms; non-2xx {non_2xx}, 5xx {server_errors}; "
        f"{results.duplicates} answered duplicate; events {rows} / distinct ids {distinct}, "
        f"jobs queued {queued}; bound p99 {args.bound_ms:g} ms: ratio "
        f"{p99 / args.bound_ms:.2f}; {'ok' if ok else 'FAILED'}"
    )
    if not ok:
        for error in results.errors[:10]:
            print(error, file=sys.stderr)
        print(web.log_tail(), file=sys.stderr)
        print(f"database (if SQLite) and logs kept in {work}", file=sys.stderr)
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
