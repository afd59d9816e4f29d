"""``make demo``: the example site with Redis, a worker, the sandbox provider and sample images.

Runs everything on this machine with no API key: the sandbox server speaks both provider
APIs, and the ``wave`` and ``wavespeed`` aliases are pointed at it unless you set their
real keys. Ctrl-C stops every process it started.
"""

from __future__ import annotations

import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from campaigns.stack import (
    BASE_DIR,
    StackError,
    manage,
    port_open,
    running,
    start_redis,
    start_sandbox,
    start_web,
    start_worker,
)

RUN_DIR = BASE_DIR / ".run"
WEB_PORT = int(os.environ.get("DEMO_PORT", "8000"))
SANDBOX_PORT = int(os.environ.get("DEMO_SANDBOX_PORT", "8765"))

# The sandbox signs its WaveSpeed-style webhooks with this; fresh for every demo run.
SANDBOX_SECRET = "whsec_" + secrets.token_hex(24)

SAMPLE_CAMPAIGN = """
from imagen_assets.models import Campaign
Campaign.objects.update_or_create(slug="spring-launch", defaults=dict(
    name="Spring launch",
    brief="Hero images for the spring collection: fresh, light, outdoors.",
    brand_prompt="Soft pastel palette, natural light, clean composition, no text.",
    default_aspect_ratio="16:9",
    budget=25,
))
"""


def demo_env(redis_url: str) -> dict[str, str]:
    sandbox = f"http://127.0.0.1:{SANDBOX_PORT}"
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "campaigns.settings")
    env["REDIS_URL"] = redis_url
    env.setdefault("DATABASE_URL", f"sqlite:///{RUN_DIR / 'demo.sqlite3'}")
    env.setdefault("MEDIA_ROOT", str(RUN_DIR / "media"))
    env.setdefault("IMAGEN_SANDBOX_URL", sandbox)
    env.setdefault("IMAGEN_WEBHOOK_BASE_URL", f"http://127.0.0.1:{WEB_PORT}")
    env.setdefault("IMAGEN_DOWNLOAD_ALLOW_HOSTS", "127.0.0.1,localhost")
    # Without real keys, the two real providers talk to the sandbox too.
    if not env.get("IMAGEN_WAVE_API_KEY"):
        env["IMAGEN_WAVE_API_KEY"] = "sandbox"
        env["IMAGEN_WAVE_BASE_URL"] = sandbox
    if not env.get("IMAGEN_WAVESPEED_API_KEY"):
        env["IMAGEN_WAVESPEED_API_KEY"] = "sandbox"
        env["IMAGEN_WAVESPEED_BASE_URL"] = sandbox
        env["IMAGEN_WAVESPEED_WEBHOOK_SECRET"] = SANDBOX_SECRET
    return env


def run(argv: list[str], env: dict[str, str]) -> None:
    subprocess.run(argv, cwd=BASE_DIR, env=env, check=True)


def main() -> int:
    # Ctrl-C and SIGTERM both stop the demo (a shell may start us with SIGINT ignored).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    RUN_DIR.mkdir(exist_ok=True)
    logs = RUN_DIR / "logs"
    logs.mkdir(exist_ok=True)
    for port, what in ((WEB_PORT, "DEMO_PORT"), (SANDBOX_PORT, "DEMO_SANDBOX_PORT")):
        if port_open("127.0.0.1", port):
            print(f"Port {port} is in use; stop what uses it or set {what}.", file=sys.stderr)
            return 1
    print("Starting Redis ...", flush=True)
    redis, redis_url = start_redis(RUN_DIR / "redis")
    env = demo_env(redis_url)
    password = secrets.token_urlsafe(9)
    try:
        with running(redis):
            run(manage("migrate", "--noinput", "-v", "0"), env)
            run(manage("shell", "-v", "0", "-c", _superuser_code(password)), env)
            run(manage("shell", "-v", "0", "-c", SAMPLE_CAMPAIGN), env)
            print("Starting the sandbox provider, a worker and the web server ...", flush=True)
            sandbox = start_sandbox(
                SANDBOX_PORT,
                env,
                logs / "sandbox.log",
                "--latency",
                "3",
                "--webhook-secret",
                SANDBOX_SECRET,
            )
            worker = start_worker(env, logs / "worker.log")
            web = start_web(WEB_PORT, env, logs / "web.log")
            with running(sandbox, worker, web):
                run(manage("imagen_reconcile", "--schedule"), env)
                run(
                    manage(
                        "imagen_generate",
                        "--campaign",
                        "spring-launch",
                        "--prompt",
                        "A picnic blanket on a hill of spring flowers at sunrise",
                        "--count",
                        "4",
                    ),
                    env,
                )
                _write_env_file(env)
                _banner(password)
                _wait(sandbox, worker, web)
    except (StackError, subprocess.CalledProcessError) as exc:
        print(f"\nThe demo could not start: {exc}\nLogs: {logs}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    print("\nStopped everything the demo started.")
    return 0


def _superuser_code(password: str) -> str:
    return (
        "from django.contrib.auth import get_user_model\n"
        "User = get_user_model()\n"
        "user, _ = User.objects.get_or_create(username='demo', defaults={'email': "
        "'demo@example.com'})\n"
        "user.is_staff = user.is_superuser = True\n"
        f"user.set_password({password!r})\n"
        "user.save()\n"
    )


ENV_FILE = RUN_DIR / "demo.env"
ENV_NAMES = ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL", "MEDIA_ROOT")


def _write_env_file(env: dict[str, str]) -> None:
    """The demo's settings, for commands run by hand in another terminal."""
    names = [*ENV_NAMES, *sorted(name for name in env if name.startswith("IMAGEN_"))]
    ENV_FILE.touch(mode=0o600)
    ENV_FILE.write_text("".join(f"{name}={shlex.quote(env[name])}\n" for name in names))


def _banner(password: str) -> None:
    line = "=" * 64
    print(
        f"\n{line}\n"
        f"  imagen-assets demo is running\n\n"
        f"  Admin:     http://127.0.0.1:{WEB_PORT}/admin/\n"
        f"  Login:     demo\n"
        f"  Password:  {password}\n\n"
        f"  Four sample images for 'Spring launch' are on their way;\n"
        f"  open Generated images to watch them arrive, then approve them.\n\n"
        f"  From another terminal, against this demo:\n"
        f"    set -a; . {ENV_FILE.relative_to(BASE_DIR)}; set +a\n"
        f"    .venv/bin/python manage.py imagen_status\n\n"
        f"  Logs: {RUN_DIR / 'logs'}     Stop: Ctrl-C\n"
        f"{line}\n",
        flush=True,
    )


def _interrupt(signum: int, frame: object) -> None:
    # Once: a second signal (make and the terminal both pass one on) must not cut the
    # clean-up short and leave the sandbox or the worker running.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def _wait(*processes: object) -> None:
    while True:
        for process in processes:
            if not process.alive():  # type: ignore[attr-defined]
                name = process.name  # type: ignore[attr-defined]
                print(f"\nThe {name} process stopped; see {Path(RUN_DIR / 'logs')}.")
                return
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
