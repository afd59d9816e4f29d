"""``make demo``: the example site with Redis, a worker, the sandbox provider and sample images.

Runs everything on this machine with no API key: the sandbox server speaks both provider
APIs, and the ``wave`` and ``wavespeed`` aliases are pointed at it unless you set their
real keys. It makes an owner and two reviewers (fresh passwords each run, printed in the
banner), generates the sample campaign's images as the owner and submits it, so the demo
opens on a campaign in review. Ctrl-C stops every process it started.

Stopping survives impatience: the first Ctrl-C (or SIGTERM, SIGHUP) starts the shutdown,
later ones are only acknowledged. The processes are asked to stop (SIGTERM to each one's
group), then SIGKILLed with whatever they started, work horses included; on Linux the demo is
also the subreaper of its descendants and its children die with it even if it is SIGKILLed.
"Stopped everything the demo started" is printed only once nothing it started still runs.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from campaigns import stack
from campaigns.settings import imagen_files_root
from campaigns.stack import (
    BASE_DIR,
    Process,
    StackError,
    manage,
    port_open,
    start_redis,
    start_sandbox,
    start_web,
    start_worker,
)

# Everything the demo keeps (database, media, Redis socket, logs, demo.env).
RUN_DIR = Path(os.environ.get("DEMO_RUN_DIR") or BASE_DIR / ".run").resolve()
WEB_PORT = int(os.environ.get("DEMO_PORT", "8000"))
SANDBOX_PORT = int(os.environ.get("DEMO_SANDBOX_PORT", "8765"))
# Seconds the sample images may take (the sandbox answers in about 3).
GENERATE_TIMEOUT = 120

# The sandbox signs its WaveSpeed-style webhooks with this; fresh for every demo run.
SANDBOX_SECRET = "whsec_" + secrets.token_hex(24)

CAMPAIGN = "spring-launch"
BRAND = "Meadow & Co."
TEMPLATE = "Hero shot"
#: The batch the demo makes (one line in Chinese: prompts in Chinese work too).
BATCH_CSV = Path(__file__).resolve().parent / "demo_batch.csv"
OWNER = "owner"
REVIEWERS = ("reviewer1", "reviewer2")
REVIEWER_GROUP = "Reviewers"

# What each demo user may do (codenames of imagen_assets; view permissions of every model).
OWNER_PERMISSIONS = ("generate_images", "add_campaign", "change_campaign")
REVIEWER_PERMISSIONS = (
    "approve_generatedimage",
    "reject_generatedimage",
    "revoke_generatedimage",
    "signoff_campaign",
)

#: Run in ``manage.py shell`` with ``PASSWORDS`` (username -> password) defined: the demo
#: users and the sample campaign, back in draft if an earlier run left it further on.
SETUP = f"""
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from imagen_assets import review
from imagen_assets.activity import Actor
from imagen_assets.models import Brand, Campaign, PromptTemplate, StylePreset

User = get_user_model()
perms = Permission.objects.filter(content_type__app_label="imagen_assets")
views = list(perms.filter(codename__startswith="view_"))

def make_user(name, codenames, superuser=False):
    user, _ = User.objects.get_or_create(
        username=name, defaults={{"email": f"{{name}}@example.com"}}
    )
    user.is_staff = True
    user.is_superuser = superuser
    user.set_password(PASSWORDS[name])
    user.save()
    user.user_permissions.set([*views, *perms.filter(codename__in=codenames)])
    return user

admin = make_user("demo", [], superuser=True)
owner = make_user({OWNER!r}, {OWNER_PERMISSIONS!r})
group, _ = Group.objects.get_or_create(name={REVIEWER_GROUP!r})
for name in {REVIEWERS!r}:
    make_user(name, {REVIEWER_PERMISSIONS!r}).groups.add(group)

# The brand kit (issue 8): words around every prompt, banned terms, style presets and a
# template with two versions, so its history shows on its page.
brand, _ = Brand.objects.update_or_create(name={BRAND!r}, defaults=dict(
    prompt_prefix="Photograph for Meadow & Co., a garden and picnic brand.",
    prompt_suffix="Soft pastel palette, natural light, clean composition, no text.",
    banned_terms="Nike\\nAdidas\\nRed Bull\\nlogo\\n耐克\\n阿迪达斯",
    default_negative_prompt="",
    default_aspect_ratio="16:9",
))
for position, (name, words) in enumerate([
    ("Studio product shot", "Seamless white backdrop, softbox lighting, sharp focus."),
    ("Outdoor lifestyle", "Golden hour, shallow depth of field, people out of focus."),
]):
    StylePreset.objects.update_or_create(
        brand=brand, name=name, defaults=dict(prompt=words, position=position)
    )
template = PromptTemplate.objects.filter(brand=brand, name={TEMPLATE!r}).first()
if template is None:
    template = PromptTemplate(brand=brand, name={TEMPLATE!r}, text="A {{product}} outdoors")
    template.save(changed_by=owner)
template.text = "A {{product}} on {{setting}}"
template.save(changed_by=admin)  # a new version only when the text changed

campaign, _ = Campaign.objects.update_or_create(slug={CAMPAIGN!r}, defaults=dict(
    name="Spring launch",
    brief="Hero images for the spring collection: fresh, light, outdoors.",
    brand=brand,
    brand_prompt="Spring collection: fresh flowers, light greens.",
    default_aspect_ratio="",
    budget=25,
    created_by=owner,
))
# An earlier run left it in review (or further): through the state machine, back to draft.
if campaign.status not in ("draft", "changes_requested"):
    if campaign.status != "archived":
        review.archive(campaign.pk, Actor.of(admin), note="The demo started again.")
    review.reopen(campaign.pk, Actor.of(admin), note="The demo started again.")
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
    # Links in the mail the demo prints to the worker's log.
    env.setdefault("IMAGEN_SITE_URL", f"http://127.0.0.1:{WEB_PORT}")
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
    # In the demo's process group, so a Ctrl-C reaches it as well; dies with the demo.
    _check_interrupted()
    try:
        subprocess.run(argv, cwd=BASE_DIR, env=env, check=True, preexec_fn=stack.die_with_parent())
    finally:
        _check_interrupted()


def _move_public_images(env: dict[str, str]) -> None:
    """Images an older demo stored under MEDIA_ROOT (served publicly) move to the private
    files root the example site now uses, so its earlier campaigns keep their pictures."""
    old = Path(env["MEDIA_ROOT"]) / "imagen"
    new = Path(imagen_files_root(env)) / "imagen"
    if not old.is_dir():
        return
    moved = 0
    for source in [path for path in old.rglob("*") if path.is_file()]:
        target = new / source.relative_to(old)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            source.rename(target)
            moved += 1
    if moved:
        print(f"Moved {moved} file(s) of earlier demo runs to {new.parent}.", flush=True)


class _Signals:
    """SIGINT, SIGTERM and SIGHUP stop the demo. The first one raises KeyboardInterrupt
    wherever the demo is; once it is stopping, further ones (make and the terminal both pass
    a Ctrl-C on; an impatient second Ctrl-C; a SIGTERM from a supervisor) are acknowledged
    and nothing else, so they cannot cut the clean-up short."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.stopping = False
        self.told = False

    def install(self) -> None:
        # Installed even where the shell started us with SIGINT ignored.
        for signum in self.SIGNALS:
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        if not self.stopping:
            self.stopping = True
            raise KeyboardInterrupt
        if not self.told:
            self.told = True
            # os.write: print() is not safe inside a signal handler (it may interrupt one).
            os.write(2, b"\nStill stopping what the demo started; a moment.\n")


#: The demo's signal state. A KeyboardInterrupt raised by the handler can be lost (raised
#: inside an at-fork hook while a child is being started, Python only prints "Exception
#: ignored"), so the demo also looks at ``SIGNALS.stopping`` between its steps.
SIGNALS = _Signals()


def _check_interrupted() -> None:
    """Raise KeyboardInterrupt if a stop signal came, even one whose exception was lost."""
    if SIGNALS.stopping:
        raise KeyboardInterrupt


def main() -> int:
    signals = SIGNALS
    signals.install()
    # Orphans (a work horse whose worker died first) come to us, not to init: still ours.
    stack.become_subreaper()
    started: list[Process] = []
    code = 1
    try:
        try:
            code = _start_and_wait(started)
        except KeyboardInterrupt:
            code = 0
    finally:
        left = _shut_down(signals, started)
    if left:
        names = ", ".join(f"{pid}" for pid, _ in left)
        print(f"\nCould not stop these processes the demo started: {names}.", file=sys.stderr)
        return 1
    if started:
        print("\nStopped everything the demo started.")
    return code


def _start_and_wait(started: list[Process]) -> int:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    logs = RUN_DIR / "logs"
    logs.mkdir(exist_ok=True)
    for port, what in ((WEB_PORT, "DEMO_PORT"), (SANDBOX_PORT, "DEMO_SANDBOX_PORT")):
        if port_open("127.0.0.1", port):
            print(f"Port {port} is in use; stop what uses it or set {what}.", file=sys.stderr)
            return 1
    try:
        print("Starting Redis ...", flush=True)
        _redis, redis_url = start_redis(RUN_DIR / "redis", started=started)
        env = demo_env(redis_url)
        _move_public_images(env)
        passwords = {name: secrets.token_urlsafe(9) for name in ("demo", OWNER, *REVIEWERS)}
        run(manage("migrate", "--noinput", "-v", "0"), env)
        run(manage("shell", "-v", "0", "-c", f"PASSWORDS = {passwords!r}\n{SETUP}"), env)
        # The policy through the command line, as the admin: two of the Reviewers.
        run(
            manage(
                "imagen_campaign",
                CAMPAIGN,
                "--policy",
                "--required-approvals",
                "2",
                "--reviewer-group",
                REVIEWER_GROUP,
                "--no-self-approval",
                "--user",
                "demo",
            ),
            env,
        )
        print("Starting the sandbox provider, a worker and the web server ...", flush=True)
        sandbox = start_sandbox(
            SANDBOX_PORT,
            env,
            logs / "sandbox.log",
            "--latency",
            "3",
            "--webhook-secret",
            SANDBOX_SECRET,
            started=started,
        )
        worker = start_worker(env, logs / "worker.log", started=started)
        web = start_web(WEB_PORT, env, logs / "web.log", started=started)
        run(manage("imagen_reconcile", "--schedule"), env)
        print("Generating the sample images as the owner ...", flush=True)
        run(
            manage(
                "imagen_generate",
                "--campaign",
                CAMPAIGN,
                "--template",
                TEMPLATE,
                "--value",
                "product=picnic blanket",
                "--value",
                "setting=a hill of spring flowers at sunrise",
                "--style",
                "Outdoor lifestyle",
                "--count",
                "4",
                "--user",
                OWNER,
                "--wait",
                "--timeout",
                str(GENERATE_TIMEOUT),
            ),
            env,
        )
        print("Generating a batch (3 prompts x 2 aspect ratios) from a CSV ...", flush=True)
        run(
            manage(
                "imagen_generate",
                "--campaign",
                CAMPAIGN,
                "--from-csv",
                str(BATCH_CSV),
                "--aspect-ratio",
                "1:1,16:9",
                "--style",
                "Outdoor lifestyle",
                "--user",
                OWNER,
                "--wait",
                "--timeout",
                str(GENERATE_TIMEOUT),
            ),
            env,
        )
        run(manage("imagen_campaign", CAMPAIGN, "--submit", "--user", OWNER), env)
        _write_env_file(env)
        _banner(passwords)
        _wait(sandbox, worker, web)
    except (StackError, subprocess.CalledProcessError) as exc:
        if SIGNALS.stopping:  # a step cut short by the Ctrl-C: not a failure
            return 0
        print(f"\nThe demo could not start: {exc}\nLogs: {logs}", file=sys.stderr)
        return 1
    return 0


def _shut_down(signals: _Signals, started: list[Process]) -> list[stack.Identity]:
    """Stop what the demo started; returns what still runs after that (nothing, normally)."""
    while True:
        try:
            signals.stopping = True  # from here on a signal cannot interrupt us
            return _stop_everything(started)
        except KeyboardInterrupt:  # the first signal came just before the line above
            continue


def _stop_everything(started: list[Process]) -> list[stack.Identity]:
    redis = [process for process in started if process.name == "redis"]
    # The site, the worker and the sandbox together (a busy worker gets 10 s to finish its
    # job), then Redis, which the worker needs to sign off.
    stack.stop_all([process for process in started if process not in redis], timeout=10)
    stack.stop_all(redis, timeout=5)
    # Anything still below us (started while the demo was being interrupted, or orphaned
    # and given to us as their subreaper): SIGKILL, then collect their exit status.
    me = os.getpid()
    with contextlib.suppress(StackError):
        stack.wait_until(lambda: not _kill_descendants(me), 5, "the demo's processes")
    stack.reap()
    return stack.descendants(me)


def _kill_descendants(pid: int) -> list[stack.Identity]:
    below = stack.descendants(pid)
    stack.kill_all(below)
    stack.reap()
    return below


ENV_FILE = RUN_DIR / "demo.env"
ENV_NAMES = ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL", "MEDIA_ROOT")


def _write_env_file(env: dict[str, str]) -> None:
    """The demo's settings, for commands run by hand in another terminal."""
    names = [*ENV_NAMES, *sorted(name for name in env if name.startswith("IMAGEN_"))]
    ENV_FILE.touch(mode=0o600)
    ENV_FILE.write_text("".join(f"{name}={shlex.quote(env[name])}\n" for name in names))


def _shown(path: Path) -> Path:
    """``path`` relative to the project when it is inside it (the default run directory)."""
    return path.relative_to(BASE_DIR) if path.is_relative_to(BASE_DIR) else path


def _banner(passwords: dict[str, str]) -> None:
    line = "=" * 72
    logins = "".join(
        f"    {name:<10} {passwords[name]:<14} {role}\n"
        for name, role in (
            ("demo", "superuser"),
            (OWNER, "owns Spring launch: generates, submits"),
            (REVIEWERS[0], "Reviewers group: approves, rejects, signs off"),
            (REVIEWERS[1], "Reviewers group: approves, rejects, signs off"),
        )
    )
    print(
        f"\n{line}\n"
        f"  imagen-assets demo is running\n\n"
        f"  Admin:  http://127.0.0.1:{WEB_PORT}/admin/\n"
        f"  Logins (user, password):\n{logins}\n"
        f"  'Spring launch' (brand kit 'Meadow & Co.', template 'Hero shot') is in\n"
        f"  review: 4 images from the template and a finished batch of 6 (3 prompts x\n"
        f"  2 aspect ratios). Each needs the approval of both reviewers (the owner may\n"
        f"  not approve them), then one of them signs the campaign off.\n\n"
        f"  From another terminal, against this demo:\n"
        f"    set -a; . {_shown(ENV_FILE)}; set +a\n"
        f"    .venv/bin/python manage.py imagen_status --campaign {CAMPAIGN}\n"
        f"    .venv/bin/python manage.py imagen_review ID... --approve --user {REVIEWERS[0]}\n"
        f"    .venv/bin/python manage.py imagen_campaign {CAMPAIGN} --approve "
        f"--user {REVIEWERS[1]}\n\n"
        f"  Logs: {RUN_DIR / 'logs'}     Stop: Ctrl-C\n"
        f"{line}\n",
        flush=True,
    )


def _wait(*processes: object) -> None:
    while True:
        for process in processes:
            if not process.alive():  # type: ignore[attr-defined]
                name = process.name  # type: ignore[attr-defined]
                print(f"\nThe {name} process stopped; see {Path(RUN_DIR / 'logs')}.")
                return
        _check_interrupted()
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
