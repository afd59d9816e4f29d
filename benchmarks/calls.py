"""What the provider-call guards cost and how exactly they hold (docs/reliability.md P5, P7).

1. A dripping answer (4 bytes every 0.1 s, 25 s in all) against a call deadline: when the
   call gives up, and the ratio to the deadline (1.00 is exact; httpx alone waits 25 s).
2. The deadline transport's cost per call to a fast loopback server, against httpx's own
   transport.
3. The circuit breaker's bookkeeping per call (one read before, one guarded update after)
   on SQLite, against the call itself.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

BODY = b'{"task_id": "t1", "status": "processing", "progress": 10}'


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes

    def do_GET(self) -> None:
        drip = self.path.startswith("/drip")
        body = BODY + b" " * (1000 if drip else 0)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not drip:
            self.wfile.write(body)
            return
        try:
            for start in range(0, len(body), 4):
                self.wfile.write(body[start : start + 4])
                self.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass  # the client gave up, as it should

    def log_message(self, *args: Any) -> None:
        pass


def setup_django() -> None:
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django_rq",
            "imagen_assets",
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        USE_TZ=True,
        IMAGEN_ASSETS={},
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deadline", type=float, default=2.0)
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    setup_django()
    from imagen_assets import breaker
    from imagen_assets.providers import ProviderError
    from imagen_assets.providers.http import DeadlineTransport, deadline
    from imagen_assets.providers.wave import WaveProvider

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"

    # 1. the deadline against a dripping answer
    options = {"API_KEY": "k", "BASE_URL": url, "TIMEOUT": 5, "DEADLINE": args.deadline}
    with WaveProvider("bench", options) as provider:
        started = time.monotonic()
        try:
            provider.request("GET", f"{url}/drip")
            outcome = "answered in full (no deadline held!)"
        except ProviderError:
            outcome = "cut off"
        took = time.monotonic() - started
    drip_seconds = (len(BODY) + 1000) / 4 * 0.1
    print(
        f"dripping answer ({drip_seconds:.0f} s in all) {outcome} after {took:.3f} s; "
        f"deadline {args.deadline:g} s; ratio {took / args.deadline:.2f}"
    )

    # 2. the transport's cost per call; the two clients take turns, so that a busy
    # machine weighs on both alike
    plain_times: list[float] = []
    guarded_times: list[float] = []
    with httpx.Client() as plain, httpx.Client(transport=DeadlineTransport()) as guarded:
        plain.get(f"{url}/fast")  # each connects once
        guarded.get(f"{url}/fast")
        for _ in range(args.calls):
            begun = time.perf_counter()
            plain.get(f"{url}/fast")
            plain_times.append(time.perf_counter() - begun)
            begun = time.perf_counter()
            with deadline(30):
                guarded.get(f"{url}/fast")
            guarded_times.append(time.perf_counter() - begun)
    plain_ms = statistics.median(plain_times) * 1000
    guarded_ms = statistics.median(guarded_times) * 1000
    print(
        f"{args.calls} calls to a loopback server: {guarded_ms:.3f} ms each through the "
        f"deadline transport; {plain_ms:.3f} ms through httpx's own; "
        f"ratio {guarded_ms / plain_ms:.2f}"
    )

    # 3. the breaker's bookkeeping per call
    times = []
    for _ in range(args.calls):
        begun = time.perf_counter()
        breaker.admit("bench", "Bench", probe_seconds=90)
        breaker.record("bench", None)
        times.append(time.perf_counter() - begun)
    book = statistics.median(times) * 1000
    print(
        f"breaker bookkeeping per call (SQLite in memory): {book:.3f} ms; "
        f"a loopback call {guarded_ms:.3f} ms; ratio {book / guarded_ms:.2f}"
    )
    server.shutdown()


if __name__ == "__main__":
    main()
