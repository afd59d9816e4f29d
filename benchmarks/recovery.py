"""Recovery after Redis loses its data: a batch in flight, redis-server SIGKILLed and started
again empty (no persistence), default settings, the documented worker command
(`manage.py rqworker --with-scheduler default`, the example site's worker class).

Prints the time from the empty restart until every image row is finished, against the
180 s bound of the issue (it was 452 s when an idle worker blocked in BLMOVE for 405 s),
and the provider submits against the tasks (a submit repeated would be paid twice).
Real processes throughout: redis-server, the sandbox over HTTP, one rqworker; polling only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from campaigns.stack import (
    bench_env,
    free_port,
    manage,
    running,
    start_redis,
    start_sandbox,
    start_worker,
)


def sandbox_submits(url: str) -> int:
    with urllib.request.urlopen(f"{url}/_sandbox/stats", timeout=5) as response:  # noqa: S310
        stats = json.load(response)
    return int(stats.get("wavespeed_submits", 0)) + int(stats.get("wave_submits", 0))


def status(env: dict[str, str]) -> list[dict[str, object]]:
    result = subprocess.run(
        manage("imagen_status", "--campaign", "recovery", "--json"),
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=24)
    parser.add_argument("--latency", type=float, default=20.0)
    parser.add_argument("--bound", type=float, default=180.0)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="imagen-recovery-"))
    redis, redis_url = start_redis(work / "redis")
    sandbox_port = free_port()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    env = bench_env(work, redis_url, sandbox_url, "INFO")
    env.pop("IMAGEN_WEBHOOK_BASE_URL", None)  # polling only
    subprocess.run(manage("migrate", "-v", "0"), env=env, check=True)
    sandbox = start_sandbox(sandbox_port, env, work / "sandbox.log", "--latency", str(args.latency))
    worker = start_worker(env, work / "worker.log")
    with running(sandbox, worker):
        time.sleep(3.0)  # the worker finishes importing Django and runs its first maintenance
        subprocess.run(
            manage("imagen_generate", "--campaign", "recovery", "--prompt", "recovery",
                   "--count", str(args.count), "--json"),
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while any(not row["provider_task_id"] for row in status(env)):
            if time.monotonic() > deadline:
                print("the batch was not submitted within 60 s", file=sys.stderr)
                return 1
            time.sleep(0.5)
        time.sleep(3.0)  # a read or two in flight, the rest scheduled
        redis.kill()  # SIGKILL: everything Redis held is gone
        redis.stop()
        redis, _ = start_redis(work / "redis")
        restarted = time.monotonic()
        with running(redis):
            while True:
                rows = status(env)
                if all(row["status"] not in ("queued", "processing") for row in rows):
                    break
                if time.monotonic() - restarted > 3 * args.bound:
                    break
                time.sleep(1.0)
            elapsed = time.monotonic() - restarted
            submits = sandbox_submits(sandbox_url)
            worker.stop()  # before its Redis goes
    tasks = len({row["provider_task_id"] for row in rows})
    finished = sum(row["status"] not in ("queued", "processing") for row in rows)
    succeeded = sum(row["status"] == "succeeded" for row in rows)
    print(
        f"recovery after an empty Redis restart ({args.count} images in {tasks} tasks, "
        f"provider latency {args.latency:g} s, polling only, 1 worker, default settings): "
        f"{elapsed:.1f} s until every row was finished ({finished}/{len(rows)}, "
        f"{succeeded} succeeded); bound {args.bound:g} s: ratio {elapsed / args.bound:.2f}; "
        f"provider submits {submits} for {tasks} tasks"
    )
    return 0 if finished == len(rows) and submits == tasks else 1


if __name__ == "__main__":
    sys.exit(main())
