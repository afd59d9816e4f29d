"""The WaveSpeed webhook endpoint under load, runserver then gunicorn, in one run.

Real processes: a private redis-server and a private PostgreSQL (``DATABASE_URL`` from the
environment instead, if set; the run's rows are removed from it afterwards), and the
example site on 127.0.0.1, first under Django's ``runserver --noreload`` (threaded, as
``make demo`` runs it), then under gunicorn (``campaigns.stack.gunicorn_command``: 2 x cores
+ 1 sync workers unless ``--workers``), each with the same load: running WaveSpeed tasks,
pre-signed ``completed`` webhooks for them posted by ``--clients`` concurrent keep-alive
clients, a share of them (20 %) re-sent with the same ``webhook-id``, as the provider does
when it retries. No worker runs: the endpoint only stores the event and queues its
processing.

For each server it prints requests/s, p50/p99 latency, the non-2xx and 5xx counts, the
stored events against the distinct ids sent and the jobs queued; then one line per bound
(issue 9), each with its ratio: gunicorn's req/s against 4 x runserver's of the same run
and against 500 req/s, gunicorn's p99 against 100 ms, and the errors of both runs against 0.
Exits non-zero when a bound is missed.

The load generator shares the machine with the server, PostgreSQL and Redis (2 cores on
CI), so it is kept lean: one thread per client on a plain socket, each request's bytes built
and signed before the clock starts, the answer read just far enough to know its status and
whether it was a duplicate. It reconnects when the server closes the connection (gunicorn's
sync workers answer ``Connection: close``; a reverse proxy holds the clients' keep-alive in
production).

runserver (wsgiref) writes the status line, headers and body in separate small sends, so
on a keep-alive connection each answer waits ~40 ms for the client's delayed ACK: its p50
here is mostly that stall, not the handler. runserver also starts a thread per connection,
and with a persistent database connection (``DATABASE_CONN_MAX_AGE`` > 0) each thread would
leave its PostgreSQL connection open until it is garbage-collected (with many short
connections that exhausts ``max_connections`` and answers 500), so it runs with the site's
default of a connection per request. gunicorn's workers are long-lived: each keeps its one
connection (``DATABASE_CONN_MAX_AGE`` 60, set by ``campaigns.stack.start_web``).

So on PostgreSQL runserver is bound by CPU rather than by that stall (opening a database
connection costs PostgreSQL about 4.5 ms per request), and the ratio of the two servers'
req/s follows the ratio of their CPU per request, printed for each process: the figure to
look at when other programs share the machine (the run says how much of the CPU they took).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from campaigns.stack import (
    GUNICORN_THREADS,
    Postgres,
    descendants,
    free_port,
    gunicorn_workers,
    running,
    start_redis,
    start_web,
)

SECRET = "whsec_benchmark-webhook-secret"
UNUSED_ORIGIN = "http://127.0.0.1:9"  # nothing is fetched from the provider in this run
PATH = "/imagen/webhooks/wavespeed/"


@dataclass
class Delivery:
    event_id: str
    request: bytes  # the whole HTTP request, signed


@dataclass
class Outcome:
    """What one server did with the load."""

    server: str
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    duplicates: int = 0
    sent: set[str] = field(default_factory=set)
    warmups: int = 0
    errors: list[str] = field(default_factory=list)
    rows: int = 0
    queued: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per part while timed
    machine: float = 0.0  # CPU seconds the whole machine used meanwhile
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def count(self) -> int:
        return len(self.statuses)

    @property
    def rate(self) -> float:
        return self.count / self.elapsed if self.elapsed else 0.0

    @property
    def distinct(self) -> int:
        """The ids sent, warm-ups included: only what was sent counts (--duration)."""
        return len(self.sent) + self.warmups

    @property
    def cpu_per_request(self) -> float:
        """Seconds of CPU, every process of the run together (web server, database, Redis,
        load generator)."""
        return sum(self.cpu.values()) / max(self.count, 1)

    @property
    def others_share(self) -> float:
        """The share of the machine's CPU other programs used meanwhile."""
        capacity = self.elapsed * (os.cpu_count() or 1)
        return max(self.machine - sum(self.cpu.values()), 0) / capacity if capacity else 0.0

    @property
    def non_2xx(self) -> int:
        return sum(1 for status in self.statuses if not 200 <= status < 300)

    @property
    def server_errors(self) -> int:
        return sum(1 for status in self.statuses if status >= 500)

    @property
    def faults(self) -> int:
        """Everything that counts as an error: non-2xx answers (transport errors are
        status 0), and each of stored events and queued jobs that differs from the ids."""
        return self.non_2xx + abs(self.rows - self.distinct) + abs(self.queued - self.distinct)

    def percentile(self, fraction: float) -> float:
        """In milliseconds."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes ``pids`` and their children that ended (and
    were waited for) have used so far (Linux /proc): a process tree's, if ``pids`` is the
    tree."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(value) for value in fields[11:15])
    return total / TICKS


def machine_busy_seconds() -> float:
    """CPU time every process on the machine has used so far, all cores (Linux /proc/stat):
    what this run's processes did not use of it was another program's."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / TICKS


def process_tree(pid: int) -> list[int]:
    return [pid, *(child for child, _start in descendants(pid))]


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
            batch_size=1000,
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
            batch_size=1000,
        )
    connection.close()
    return ids


def remove_run(run: str) -> None:
    from imagen_assets.models import Campaign, WebhookEvent

    WebhookEvent.objects.filter(provider="wavespeed", event_id__startswith=f"{run}-").delete()
    Campaign.objects.filter(slug=f"bench-{run}").delete()  # its tasks and images cascade


def signed(event_id: str, task_id: str, host: str) -> Delivery:
    """A `completed` webhook as WaveSpeed sends it (the bare prediction), signed now, as
    the bytes of its HTTP request."""
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
    signature = sign_wavespeed_webhook(SECRET, event_id, timestamp, body)
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nwebhook-id: {event_id}\r\n"
        f"webhook-timestamp: {timestamp}\r\nwebhook-signature: {signature}\r\n\r\n"
    )
    return Delivery(event_id, head.encode() + body)


def plan(
    task_ids: list[str], requests: int, duplicates: float, run: str, host: str
) -> list[Delivery]:
    """``requests`` deliveries: one per distinct event, and re-sends of earlier ones placed
    within the next ~200 deliveries after their first (some land while the first is still
    in flight), so any prefix of the plan (a --duration run) has the same share of re-sends."""
    rng = random.Random(1)
    distinct = round(requests * (1 - duplicates))
    originals = [
        signed(f"{run}-msg-{i}", task_ids[i % len(task_ids)], host) for i in range(distinct)
    ]
    keyed: list[tuple[float, Delivery]] = [(float(i), d) for i, d in enumerate(originals)]
    for _ in range(requests - distinct):
        first = rng.randrange(distinct)
        keyed.append((first + 0.5 + rng.random() * 200, originals[first]))
    keyed.sort(key=lambda item: item[0])
    return [delivery for _key, delivery in keyed]


class Connection:
    """A minimal HTTP/1.1 client on one socket: send prepared bytes, read the answer's
    status and body, reconnect when the server closed the connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def post(self, request: bytes) -> tuple[int, bytes]:
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock = self.sock
        sock.sendall(request)
        buffer = b""
        while (end := buffer.find(b"\r\n\r\n")) < 0:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection before answering")
            buffer += chunk
        head, body = buffer[:end].decode("latin-1"), buffer[end + 4 :]
        status_line, *header_lines = head.split("\r\n")
        status = int(status_line.split()[1])
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip().lower()
        length = headers.get("content-length")
        keep = headers.get("connection") != "close" and not status_line.startswith("HTTP/1.0")
        if length is None:  # the body runs to the end of the connection
            keep = False
            while chunk := sock.recv(65536):
                body += chunk
        else:
            while len(body) < int(length):
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the server closed the connection mid-answer")
                body += chunk
        if not keep:
            self.close()
        return status, body


def client_thread(
    port: int,
    work: Iterator[Delivery],
    lock: threading.Lock,
    warmup: Delivery,
    ready: threading.Barrier,
    outcome: Outcome,
    stop_at: list[float],
) -> None:
    connection = Connection(port)
    latencies: list[float] = []
    statuses: list[int] = []
    duplicates = 0
    sent: set[str] = set()
    errors: list[str] = []
    try:
        status, body = connection.post(warmup.request)
        if status != 200:
            errors.append(f"warm-up: {status} {body[:200]!r}")
    except OSError as exc:
        errors.append(f"warm-up: {exc!r}")
    # A new connection for the timed part: waiting for the other clients may outlast the
    # server's keep-alive timeout (gunicorn's is 2 s).
    connection.close()
    ready.wait()
    clock = time.perf_counter
    while True:
        with lock:
            delivery = next(work, None)
        if delivery is None or time.monotonic() > stop_at[0]:
            break  # all sent, or --duration is up: the deliveries left are not sent
        sent.add(delivery.event_id)
        started = clock()
        try:
            status, body = connection.post(delivery.request)
        except OSError as exc:
            connection.close()
            errors.append(f"{delivery.event_id}: {exc!r}")
            statuses.append(0)
            continue
        latencies.append(clock() - started)
        statuses.append(status)
        if status == 200 and b'"duplicate": true' in body:
            duplicates += 1
        elif status >= 300 and len(errors) < 5:
            errors.append(f"{delivery.event_id}: {status} {body[:200]!r}")
    connection.close()
    with outcome.lock:
        outcome.latencies += latencies
        outcome.statuses += statuses
        outcome.duplicates += duplicates
        outcome.sent |= sent
        outcome.errors += errors


def load(
    server: str,
    env: dict[str, str],
    work: Path,
    args: argparse.Namespace,
    parts: dict[str, Callable[[], list[int]]],
) -> tuple[Outcome, str]:
    """Start ``server``, send this run's deliveries, stop it; the outcome and the run id."""
    from django.db import connection

    from imagen_assets.models import WebhookEvent
    from imagen_assets.queueing import get_queue

    run = uuid.uuid4().hex[:12]  # keeps this run's rows apart (a shared database)
    distinct = round(args.requests * (1 - args.duplicates))
    task_ids = create_tasks(args.tasks or distinct + args.clients, run)
    port = free_port()
    host = f"127.0.0.1:{port}"
    # Signed just before sending: the timestamp must be within WEBHOOK_TOLERANCE.
    deliveries = plan(task_ids, args.requests, args.duplicates, run, host)
    warmups = [signed(f"{run}-warmup-{i}", task_ids[-1 - i], host) for i in range(args.clients)]
    queue = get_queue()
    queued_before = queue.count
    outcome = Outcome(server, warmups=len(warmups))
    web = start_web(
        port,
        {**env, "IMAGEN_WEBHOOK_BASE_URL": f"http://{host}"},
        work / f"{server}.log",
        server=server,
        workers=args.workers,
        threads=args.threads,
    )
    with running(web):
        todo = iter(deliveries)
        lock = threading.Lock()
        ready = threading.Barrier(args.clients + 1, timeout=60)
        stop_at = [float("inf")]  # set when the clock starts
        threads = [
            threading.Thread(
                target=client_thread,
                args=(port, todo, lock, warmups[i], ready, outcome, stop_at),
            )
            for i in range(args.clients)
        ]
        for thread in threads:
            thread.start()
        ready.wait()  # every client warmed up: the web server's processes and their
        # database connections are up (listed before the clock starts, its cost aside)
        watched = {"web": lambda: process_tree(web.pid), **parts}
        pids = {name: find() for name, find in watched.items()}
        started = time.monotonic()
        cpu_before = {name: cpu_seconds(found) for name, found in pids.items()}
        own_before = time.process_time()
        machine_before = machine_busy_seconds()
        if args.duration > 0:
            stop_at[0] = started + args.duration
        for thread in threads:
            thread.join()
        outcome.elapsed = time.monotonic() - started
        outcome.cpu = {name: cpu_seconds(found) - cpu_before[name] for name, found in pids.items()}
        outcome.cpu["load generator"] = time.process_time() - own_before
        outcome.machine = machine_busy_seconds() - machine_before
        if outcome.errors:
            outcome.errors.append(web.log_tail())
    outcome.rows = WebhookEvent.objects.filter(
        provider="wavespeed", event_id__startswith=f"{run}-"
    ).count()
    outcome.queued = queue.count - queued_before
    connection.close()
    return outcome, run


def ratio_line(label: str, value: str, bound: str, ratio: float, ok: bool) -> str:
    return f"{label}: {value}; bound {bound}: ratio {ratio:.2f} {'ok' if ok else 'FAILED'}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=4000, help="per server")
    parser.add_argument(
        "--duration",
        type=float,
        default=0.0,
        help="stop sending after this many seconds per server (L1: 30 s; plan --requests "
        "beyond it)",
    )
    parser.add_argument("--duplicates", type=float, default=0.2, help="share of re-sends")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument(
        "--tasks", type=int, default=0, help="tasks the events name (default: one per event)"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help=f"gunicorn workers ({gunicorn_workers()} here)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=GUNICORN_THREADS,
        help="gunicorn threads per worker (> 1: the gthread worker, keep-alive; 1: sync)",
    )
    parser.add_argument(
        "--servers", default="runserver,gunicorn", help="which to run, in order (bounds: both)"
    )
    parser.add_argument("--speedup", type=float, default=4.0, help="bound: x runserver's req/s")
    parser.add_argument(
        "--min-rate", type=float, default=500.0, help="bound: gunicorn req/s (0: none, L1)"
    )
    parser.add_argument("--p99-ms", type=float, default=100.0, help="bound: gunicorn p99")
    args = parser.parse_args()
    servers = [name.strip() for name in args.servers.split(",") if name.strip()]

    shared_database = "DATABASE_URL" in os.environ
    work = Path(tempfile.mkdtemp(prefix="imagen-bench-"))
    parts: dict[str, Callable[[], list[int]]] = {}  # what else works for each request
    with contextlib.ExitStack() as stack:
        if shared_database:
            database_url = os.environ["DATABASE_URL"]
        else:  # a short path: PostgreSQL's socket name must fit in 107 bytes
            postgres = Postgres(Path(tempfile.mkdtemp(prefix="imagen-pg-"))).start()
            stack.callback(postgres.stop)
            database_url = postgres.url
            postmaster = int((postgres.data / "postmaster.pid").read_text().split()[0])
            parts["postgres"] = lambda: process_tree(postmaster)
        redis, redis_url = start_redis(work / "redis")
        parts["redis"] = lambda: [redis.pid]
        stack.enter_context(running(redis))
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
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
            "IMAGEN_LOG_LEVEL": "WARNING",
        }
        setup_django(env)
        from django.core.management import call_command
        from django.db import connection

        call_command("migrate", verbosity=0)
        connection.close()
        backend = "postgresql" if "postgres" in database_url else "sqlite"
        outcomes: dict[str, Outcome] = {}
        for server in servers:
            outcome, run = load(server, env, work, args, parts)
            outcomes[server] = outcome
            if shared_database:  # leave it as it was
                remove_run(run)
            resent = outcome.count - len(outcome.sent)
            print(
                f"webhooks under {server} + {backend}, {outcome.count} signed WaveSpeed POSTs "
                f"({resent} re-sent ids), {args.clients} keep-alive clients: "
                f"{outcome.rate:.0f} req/s ({outcome.elapsed:.1f} s); "
                f"p50 {outcome.percentile(0.5):.1f} ms, p99 {outcome.percentile(0.99):.1f} ms; "
                f"non-2xx {outcome.non_2xx}, 5xx {outcome.server_errors}; "
                f"{outcome.duplicates} answered duplicate; events {outcome.rows} / distinct "
                f"ids {outcome.distinct}, jobs queued {outcome.queued}",
                flush=True,
            )
            per_request = ", ".join(
                f"{name} {seconds / max(outcome.count, 1) * 1000:.2f} ms"
                for name, seconds in outcome.cpu.items()
            )
            capacity = outcome.elapsed * (os.cpu_count() or 1)
            print(
                f"  CPU per request under {server}: {per_request}; "
                f"{outcome.cpu_per_request * 1000:.2f} ms in all; this run used "
                f"{sum(outcome.cpu.values()) / capacity:.0%} of {os.cpu_count()} cores, "
                f"other programs {outcome.others_share:.0%}",
                flush=True,
            )
        connection.close()

    ok = True
    lines = []
    errors = sum(outcome.faults for outcome in outcomes.values())
    lines.append(
        ratio_line(
            f"webhooks errors ({', '.join(outcomes)}: non-2xx + events or jobs != ids)",
            str(errors),
            "0",
            0.0 if errors == 0 else float("inf"),
            errors == 0,
        )
    )
    ok &= errors == 0
    if "gunicorn" in outcomes:
        fast = outcomes["gunicorn"]
        p99 = fast.percentile(0.99)
        if args.min_rate > 0:
            lines.append(
                ratio_line(
                    "webhooks gunicorn throughput",
                    f"{fast.rate:.0f} req/s",
                    f">= {args.min_rate:g} req/s",
                    fast.rate / args.min_rate,
                    fast.rate >= args.min_rate,
                )
            )
            ok &= fast.rate >= args.min_rate
        lines.append(
            ratio_line(
                "webhooks gunicorn p99",
                f"{p99:.1f} ms",
                f"< {args.p99_ms:g} ms",
                p99 / args.p99_ms,
                p99 < args.p99_ms,
            )
        )
        ok &= p99 < args.p99_ms
        if "runserver" in outcomes:
            slow = outcomes["runserver"]
            target = args.speedup * slow.rate
            cpu_ratio = slow.cpu_per_request / fast.cpu_per_request
            lines.append(
                ratio_line(
                    "webhooks gunicorn vs runserver",
                    f"{fast.rate:.0f} req/s vs {slow.rate:.0f} req/s "
                    f"({fast.rate / slow.rate:.2f}x; CPU per request {cpu_ratio:.2f}x less)",
                    f">= {args.speedup:g} x runserver = {target:.0f} req/s",
                    fast.rate / target,
                    fast.rate >= target,
                )
            )
            ok &= fast.rate >= target
    for line in lines:
        print(line)
    busy = max(outcomes.values(), key=lambda outcome: outcome.others_share, default=None)
    if busy is not None and busy.others_share > 0.1:
        print(
            f"  (other programs used {busy.others_share:.0%} of the CPU during the "
            f"{busy.server} run: req/s and latencies are lower than this machine gives)"
        )
    if not ok:
        for outcome in outcomes.values():
            for error in outcome.errors[:10]:
                print(f"{outcome.server}: {error}", file=sys.stderr)
        print(f"logs kept in {work}", file=sys.stderr)
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
