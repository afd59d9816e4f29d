"""S5: whole-model sequences, as a Hypothesis state machine over the service layer.

Requests, submits, provider progress, webhooks (signed states, stale and out of order, and
hints), polls, lost and repeated jobs, a worker killed in the middle of a submit, the
reconciler, time passing, CDN outages, approvals, rejections and revokes, in any order.
After every step the invariants of ``docs/reliability.md`` that apply are checked; at the
end the clock runs on (with the reconciler scheduled, as ``imagen_assets.worker`` keeps it)
until every task and image has ended, and each must have ended within its deadline.

The parts: the real jobs (``imagen_assets.jobs`` called directly), lifecycle, ingest
(real download code over an in-memory CDN, real Pillow, real file storage) and review; an
in-memory provider that fails the test on any call it does not expect; a queue that holds
the jobs the code enqueues, with their due times; an in-memory clock (``timezone.now``).
Each example runs in a transaction that is rolled back, on SQLite.
"""

from __future__ import annotations

import itertools
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import TestCase
from django.utils import timezone
from django.utils.module_loading import import_string
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from unit_helpers import CDN_ADDRESS, CDN_HOST, image_bytes, imagen_settings

from imagen_assets import downloads, ingest, jobs, notifications, queueing, review, services
from imagen_assets.activity import Actor
from imagen_assets.models import (
    Campaign,
    GeneratedImage,
    GenerationTask,
    ReviewDecision,
    WebhookEvent,
)
from imagen_assets.providers import (
    GenerationParams,
    Output,
    Provider,
    ProviderError,
    ProviderTask,
    WebhookAuth,
)
from imagen_assets.status import (
    OPEN_IMAGE_STATUSES,
    TERMINAL_TASK_STATUSES,
    Decision,
    ImageStatus,
    ReviewStatus,
    TaskStatus,
)

pytestmark = pytest.mark.django_db

ALIAS = "model"
PROVIDER_TIMEOUT = 5.0  # seconds per phase of a provider call: the submit lease is 4x + 30
TIMINGS = {
    "TASK_TIMEOUT": 120,
    "RECONCILE_AFTER": 60,
    "RECONCILE_INTERVAL": 30,
    "POLL_INTERVAL": 2.0,
    "POLL_BACKOFF": 1.5,
    "POLL_MAX_INTERVAL": 30.0,
    "SUBMIT_MAX_ATTEMPTS": 6,
    # One thread: the model runs in one transaction on one connection.
    "JOB_THREADS": 1,
}
PNG = image_bytes("PNG", (16, 12))

#: How often each thing happened over all examples (printed at the end, shown with -s):
#: what the sequences reached, so a change that stops them reaching something shows.
SEEN: Counter[str] = Counter()


def event(what: str) -> None:
    SEEN[what] += 1


class WorkerKilled(BaseException):
    """The worker died in the middle of a job (SIGKILL): nothing after this point ran."""


# -- the clock -------------------------------------------------------------------------------


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


# -- the provider ----------------------------------------------------------------------------


@dataclass
class RemoteTask:
    """A task as the provider sees it."""

    task_id: str
    num_images: int
    history: list[ProviderTask] = field(default_factory=list)
    #: When the provider finishes it by itself (with every image), if it does.
    finish_at: datetime | None = None

    @property
    def state(self) -> ProviderTask:
        return self.history[-1]


@dataclass
class FakeProvider:
    """The provider's side: its tasks, what its next submit does, whether reads fail."""

    tasks: dict[str, RemoteTask] = field(default_factory=dict)
    submits: Counter[str] = field(default_factory=Counter)  # per idempotency key
    next_submit: str = "ok"  # ok | unavailable | timeout | killed
    reads_down: bool = False
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    clock: Clock | None = None
    #: Seconds it takes to finish a task by itself; None: only when told (a rule).
    latency: float | None = None

    def current(self, task: RemoteTask) -> ProviderTask:
        """The task's state now: finished by itself once its time has come."""
        assert self.clock is not None
        if task.finish_at is not None and self.clock() >= task.finish_at:
            task.finish_at = None
            self.move(task, TaskStatus.SUCCEEDED, delivered=task.num_images)
        return task.state

    def submit(self, params: GenerationParams, idempotency_key: str) -> ProviderTask:
        mode, self.next_submit = self.next_submit, "ok"
        if mode == "unavailable":  # refused before anything was started
            raise ProviderError(ALIAS, "Service unavailable", status_code=503, retryable=True)
        self.submits[idempotency_key] += 1
        task_id = f"remote-{next(self.ids)}"
        task = RemoteTask(task_id, params.num_images)
        if self.latency is not None and self.clock is not None:
            task.finish_at = self.clock() + timedelta(seconds=self.latency)
        task.history.append(ProviderTask(task_id, TaskStatus.SUBMITTED))
        self.tasks[task_id] = task
        if mode == "timeout":  # started, but the answer never came back
            raise ProviderError(ALIAS, "Read timed out", retryable=True, ambiguous=True)
        if mode == "killed":
            raise WorkerKilled
        return task.state

    def fetch(self, task_id: str) -> ProviderTask:
        if task_id not in self.tasks:
            raise AssertionError(f"read of a task the provider never created: {task_id}")
        if self.reads_down:
            raise ProviderError(ALIAS, "Bad gateway", status_code=502, retryable=True)
        return self.current(self.tasks[task_id])

    def move(self, task: RemoteTask, status: TaskStatus, delivered: int) -> None:
        if task.state.terminal or status.rank < task.state.status.rank:
            return
        outputs: tuple[Output, ...] = ()
        if status == TaskStatus.SUCCEEDED:
            outputs = tuple(
                Output(f"https://{CDN_HOST}/{task.task_id}/{index}.png")
                for index in range(min(delivered, task.num_images))
            )
        error = "Refused by the model" if status == TaskStatus.FAILED else ""
        task.history.append(
            ProviderTask(task.task_id, status, outputs=outputs, error_message=error)
        )


class ModelProvider(Provider):
    """The backend the jobs build (``IMAGEN_ASSETS["PROVIDERS"]["model"]``): every call goes
    to the example's :class:`FakeProvider`; webhooks arrive already verified (as the view
    records them), so verifying or parsing one here is a call nobody expects."""

    display_name = "Model"
    required_options = frozenset()
    idempotent_submit = False  # the strict case: a repeated submit may pay twice
    webhook_auth = WebhookAuth.SIGNATURE
    remote: ClassVar[FakeProvider | None] = None

    @property
    def _remote(self) -> FakeProvider:
        assert self.remote is not None, "no example is running"
        return self.remote

    def request_body(self, params: GenerationParams, *, callback_url: str | None) -> dict[str, Any]:
        return {"prompt": params.prompt, "num_images": params.num_images, "seed": params.seed}

    def submit(
        self, params: GenerationParams, *, idempotency_key: str, callback_url: str | None = None
    ) -> ProviderTask:
        assert callback_url is None  # WEBHOOK_BASE_URL is None here
        return self._remote.submit(params, idempotency_key)

    def fetch(self, task_id: str) -> ProviderTask:
        return self._remote.fetch(task_id)

    def prepare_webhooks(self) -> None:
        raise AssertionError("prepare_webhooks is not expected without a callback URL")

    def verify_webhook(self, headers: Any, body: bytes) -> None:
        raise AssertionError("verify_webhook is not expected: the view is not in this model")

    def parse_webhook(self, headers: Any, body: bytes) -> Any:
        raise AssertionError("parse_webhook is not expected: the view is not in this model")


# -- the CDN the outputs are downloaded from -------------------------------------------------


@dataclass
class FakeCDN:
    remote: FakeProvider
    down: bool = False
    downloads: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        # The download goes to the address the name was checked at, naming the host.
        url = f"https://{request.headers.get('host')}{request.url.path}"
        task = self.remote.tasks.get(request.url.path.strip("/").partition("/")[0])
        if task is None or url not in [output.url for output in task.state.outputs]:
            # Recorded too: the code under test catches what storing an image raises.
            self.unexpected.append(url)
            raise AssertionError(f"download of something never delivered: {url}")
        self.downloads[url] += 1
        if self.down:
            return httpx.Response(503, content=b"try later")
        return httpx.Response(200, content=PNG, headers={"Content-Type": "image/png"})


# -- the queue -------------------------------------------------------------------------------

PIPELINE_JOBS = {
    jobs.submit,
    jobs.submit_many,
    jobs.poll,
    jobs.poll_many,
    jobs.complete,
    jobs.process_webhook,
}


@dataclass
class QueuedJob:
    func: Callable[..., Any]
    args: tuple[Any, ...]
    due: datetime
    number: int

    def __repr__(self) -> str:
        return f"{self.func.__name__}{self.args}@{self.number}"


# -- the machine -----------------------------------------------------------------------------


@dataclass
class Context:
    """What the pytest test hands to each example."""

    clock: Clock
    media_root: Path


class PipelineMachine(RuleBasedStateMachine):
    context: ClassVar[Context]

    def __init__(self) -> None:
        super().__init__()
        self.clock = self.context.clock
        self.remote = FakeProvider(clock=self.clock)
        ModelProvider.remote = self.remote
        self.cdn = FakeCDN(self.remote)
        _current_cdn[0] = self.cdn
        self.queue: list[QueuedJob] = []
        self.numbers = itertools.count()
        _current_queue[0] = self
        # Rolled back after each example. Marked as a test case's block, as Django's
        # TestCase marks its own, so the durable block recording file names may open in it.
        self.atomic = transaction.atomic()
        self.atomic._from_testcase = True  # type: ignore[attr-defined]
        self.atomic.__enter__()
        # What each row was last seen as, and when it ended (by the clock).
        self.task_seen: dict[int, TaskStatus] = {}
        self.image_seen: dict[int, tuple[str, str]] = {}
        self.started_at: dict[int, datetime] = {}
        self.ended_at: dict[int, datetime] = {}
        self.image_ended_at: dict[int, datetime] = {}
        self.webhook_ids = itertools.count(1)
        self.next_reconcile = self.clock() + timedelta(seconds=TIMINGS["RECONCILE_INTERVAL"])

    # -- setting up ---------------------------------------------------------------------------

    @initialize(
        required=st.integers(1, 2),
        latency=st.sampled_from([None, 3, 3, 20, 200]),
        earlier=st.integers(0, 3),
    )
    def setup(self, required: int, latency: float | None, earlier: int) -> None:
        """Two reviewers and the one who asks for images; ``earlier`` images generated
        before the sequence starts, ready for review; the provider's speed."""
        users = get_user_model().objects
        self.owner = users.create_user("owner", is_staff=True, is_superuser=True)
        self.reviewers = [
            users.create_user(f"reviewer{n}", is_staff=True, is_superuser=True) for n in (1, 2)
        ]
        self.campaign = Campaign.objects.create(
            name="Model", slug="model", required_approvals=required
        )
        if earlier:
            self.remote.latency = 1
            self.request_images(earlier)
            self.run_for(self.clock() + timedelta(seconds=30))
            assert GeneratedImage.objects.filter(status=ImageStatus.SUCCEEDED).count() == earlier
        self.remote.latency = latency

    def enqueue(
        self,
        func: queueing.Job_,
        *args: Any,
        delay: float | None = None,
        job_id: str | None = None,
        timeout: int | None = None,
    ) -> bool:
        job = import_string(func) if isinstance(func, str) else func
        if job not in PIPELINE_JOBS:
            # Mail about workflow steps: not part of this model; anything else is a surprise.
            assert job is import_string(notifications.JOB), f"unexpected job {job}"
            return True
        due = self.clock() + timedelta(seconds=delay or 0)
        self.queue.append(QueuedJob(job, args, due, next(self.numbers)))
        return True

    def due_jobs(self) -> list[QueuedJob]:
        return [job for job in self.queue if job.due <= self.clock()]

    def run_job(self, job: QueuedJob) -> None:
        try:
            with TestCase.captureOnCommitCallbacks(execute=True):
                outcome = job.func(*job.args)
        except WorkerKilled:
            event("worker killed during a submit")
            return  # the job is gone with its worker; the database keeps what was written
        for one in outcome if isinstance(outcome, list) else [outcome]:  # submit_many: a list
            event(f"{job.func.__name__}: {one.did}{f' ({one.why})' if one.why else ''}")

    def committed(self) -> Any:
        """Run ``on_commit`` callbacks at the end of the block, as a real commit would."""
        return TestCase.captureOnCommitCallbacks(execute=True)

    # -- rules: people ------------------------------------------------------------------------

    @precondition(lambda self: GenerationTask.objects.count() < 5)
    @rule(
        count=st.integers(1, 6),
        first_submit=st.sampled_from(["ok", "ok", "unavailable", "timeout", "killed"]),
    )
    def request_images_and_the_first_submit(self, count: int, first_submit: str) -> None:
        """A request; what the next submit meets at the provider (also a rule of its own)."""
        self.remote.next_submit = first_submit
        self.request_images(count)

    def request_images(self, count: int) -> None:
        with self.committed():
            tasks = services.request_images(
                campaign=self.campaign, prompt="Dunes", count=count, provider=ALIAS, user=self.owner
            )
        for task in tasks:
            self.started_at[task.pk] = self.clock()

    @precondition(lambda self: GeneratedImage.objects.exists())
    @rule(
        data=st.data(),
        decision=st.sampled_from([Decision.APPROVE, Decision.REJECT, Decision.REVOKE]),
        who=st.integers(0, 2),
    )
    def anyone_decides_on_any_image(
        self, data: st.DataObject, decision: Decision, who: int
    ) -> None:
        ids = list(GeneratedImage.objects.order_by("pk").values_list("pk", flat=True))
        self.decide(data.draw(st.sampled_from(ids)), decision, [self.owner, *self.reviewers][who])

    @precondition(lambda self: GeneratedImage.objects.filter(status=ImageStatus.SUCCEEDED).exists())
    @rule(
        data=st.data(),
        decision=st.sampled_from(
            [Decision.APPROVE, Decision.APPROVE, Decision.REJECT, Decision.REVOKE]
        ),
        who=st.integers(0, 1),
    )
    def a_reviewer_decides_on_a_ready_image(
        self, data: st.DataObject, decision: Decision, who: int
    ) -> None:
        ready = GeneratedImage.objects.filter(status=ImageStatus.SUCCEEDED).order_by("pk")
        image_id = data.draw(st.sampled_from(list(ready.values_list("pk", flat=True))))
        self.decide(image_id, decision, self.reviewers[who])

    def decide(self, image_id: int, decision: Decision, user: Any) -> None:
        before = GeneratedImage.objects.get(pk=image_id)
        try:
            with self.committed():
                review.decide(image_id, decision, Actor.of(user), note="Because.")
        except review.ReviewError:
            event(f"{decision} refused")
            after = GeneratedImage.objects.get(pk=image_id)
            assert (after.review_status, after.review_round) == (
                before.review_status,
                before.review_round,
            ), "a refused decision changed the image"
            return
        event(f"{decision} recorded")
        # Accepted: only ever on a ready image, never by the one who asked for it.
        assert before.status == ImageStatus.SUCCEEDED
        assert decision is Decision.REVOKE or user != self.owner

    # -- rules: the provider ------------------------------------------------------------------

    @precondition(lambda self: any(not t.state.terminal for t in self.remote.tasks.values()))
    @rule(
        data=st.data(),
        status=st.sampled_from(
            [TaskStatus.PROCESSING, TaskStatus.SUCCEEDED, TaskStatus.SUCCEEDED, TaskStatus.FAILED]
        ),
        delivered=st.integers(0, 4),
    )
    def provider_moves(self, data: st.DataObject, status: TaskStatus, delivered: int) -> None:
        open_tasks = [t for t in self.remote.tasks.values() if not t.state.terminal]
        task = data.draw(st.sampled_from(open_tasks))
        # Mostly everything asked for; sometimes fewer (withheld by a safety filter).
        self.remote.move(task, status, delivered=task.num_images if delivered >= 2 else delivered)

    @rule(mode=st.sampled_from(["unavailable", "timeout", "killed"]))
    def next_submit_goes_wrong(self, mode: str) -> None:
        self.remote.next_submit = mode

    @rule()
    def outage_ends(self) -> None:
        self.remote.reads_down = self.cdn.down = False

    @rule(down=st.booleans())
    def provider_reads_fail(self, down: bool) -> None:
        self.remote.reads_down = down

    @rule(down=st.booleans())
    def cdn_outage(self, down: bool) -> None:
        self.cdn.down = down

    @precondition(lambda self: bool(self.remote.tasks))
    @rule(data=st.data(), hint=st.booleans())
    def webhook(self, data: st.DataObject, hint: bool) -> None:
        """A verified webhook as the view records it: a signed state (any the task has been
        in: late, repeated, out of order), or an unsigned hint to read the task again."""
        task = data.draw(
            st.sampled_from(sorted(self.remote.tasks.values(), key=lambda t: t.task_id))
        )
        self.remote.current(task)
        state = None if hint else data.draw(st.sampled_from(task.history))
        with self.committed():
            event = WebhookEvent.objects.create(
                provider=ALIAS,
                event_id=f"event-{next(self.webhook_ids)}",
                provider_task_id=task.task_id,
                state=state.to_json() if state is not None else None,
                received_at=self.clock(),
            )
            transaction.on_commit(lambda: queueing.enqueue(jobs.process_webhook, event.pk))

    # -- rules: the queue, the workers, time --------------------------------------------------

    @precondition(lambda self: bool(self.due_jobs()))
    @rule(data=st.data(), how=st.sampled_from(["run", "run", "run", "lost", "twice"]))
    def worker_takes_a_job(self, data: st.DataObject, how: str) -> None:
        """A due job runs; or is lost (Redis restarted without it, its worker was killed
        before it started); or runs and is delivered again later (at least once)."""
        job = data.draw(st.sampled_from(self.due_jobs()))
        if how != "twice":
            self.queue.remove(job)
        if how != "lost":
            self.run_job(job)

    @rule()
    def reconciler_runs(self) -> None:
        with self.committed():
            jobs.reconcile()

    @rule(seconds=st.sampled_from([1, 3, 10, 45, 200]))
    def time_passes(self, seconds: int) -> None:
        """Time passes with the workers up: each job runs when it is due (the earliest
        first) and the reconciler's scheduled run every RECONCILE_INTERVAL."""
        self.run_for(self.clock() + timedelta(seconds=seconds))

    def run_for(self, until: datetime, stop_when_all_ended: bool = False) -> None:
        for _step in range(5000):
            if stop_when_all_ended and not self.anything_open():
                return
            due = sorted(self.due_jobs(), key=lambda job: (job.due, job.number))
            if due:
                self.queue.remove(due[0])
                self.run_job(due[0])
            else:
                upcoming = min([self.next_reconcile, *(job.due for job in self.queue)])
                if upcoming > until:
                    self.clock.now = until
                    return
                self.clock.now = upcoming
                if self.clock() >= self.next_reconcile:
                    with self.committed():
                        jobs.reconcile()
                    self.next_reconcile = self.clock() + timedelta(
                        seconds=TIMINGS["RECONCILE_INTERVAL"]
                    )
            self.statuses_never_go_back()  # also notes when each row ended
        raise AssertionError("time never got to the end: jobs keep being due")

    # -- invariants (a few queries each: they run after every step) --------------------------

    @invariant()
    def statuses_never_go_back(self) -> None:
        """Task rank never decreases; a terminal task or image never changes (nor does a
        stored image's file). Notes when each ended, for the deadlines."""
        for pk, value in GenerationTask.objects.values_list("pk", "status"):
            status = TaskStatus(value)
            seen = self.task_seen.get(pk)
            if seen is not None:
                assert status.rank >= seen.rank, f"task {pk}: {seen} -> {status}"
                assert not seen.terminal or status == seen, f"task {pk}: {seen} -> {status}"
            if status.terminal:
                self.ended_at.setdefault(pk, self.clock())
            self.task_seen[pk] = status
        for pk, value, file in GeneratedImage.objects.values_list("pk", "status", "file"):
            seen_image = self.image_seen.get(pk)
            if seen_image is not None and ImageStatus(seen_image[0]).terminal:
                assert (value, file) == seen_image, f"image {pk}: {seen_image} -> {value}"
            if ImageStatus(value).terminal:
                self.image_ended_at.setdefault(pk, self.clock())
            self.image_seen[pk] = (value, file)

    @invariant()
    def images_follow_their_task(self) -> None:
        rows = GeneratedImage.objects.values_list(
            "status", "index", "task__status", "task__outputs"
        )
        for status, index, task_status, outputs in rows:
            if task_status in (TaskStatus.FAILED, TaskStatus.CANCELLED):
                assert status not in OPEN_IMAGE_STATUSES
            if status in (ImageStatus.SUCCEEDED, ImageStatus.FILTERED):
                assert task_status == TaskStatus.SUCCEEDED
            if status == ImageStatus.FILTERED:
                assert index >= len(outputs)
            if status == ImageStatus.SUCCEEDED:
                assert index < len(outputs)

    @invariant()
    def one_stored_file_per_output_and_no_orphans(self) -> None:
        """The files in storage are exactly the original and thumbnail of each stored image:
        at most one object per output, none left behind by a run that lost a race."""
        on_disk = sorted(
            str(path.relative_to(self.context.media_root))
            for path in self.context.media_root.rglob("*")
            if path.is_file()
        )
        recorded: list[str] = []
        rows = GeneratedImage.objects.values_list("status", "file", "thumbnail")
        for status, file, thumbnail in rows:
            if status == ImageStatus.SUCCEEDED:
                assert file and thumbnail
                recorded += [file, thumbnail]
            else:
                assert not file and not thumbnail
        assert on_disk == sorted(recorded)

    @invariant()
    def no_unexpected_download(self) -> None:
        assert not self.cdn.unexpected, self.cdn.unexpected

    @invariant()
    def at_most_one_submit_per_task(self) -> None:
        """The provider takes no idempotency key: each task reached it at most once."""
        keys = {str(k) for k in GenerationTask.objects.values_list("idempotency_key", flat=True)}
        assert all(self.remote.submits[key] <= 1 for key in keys), self.remote.submits
        assert set(self.remote.submits) <= keys

    @invariant()
    def reviews_only_of_stored_images_and_as_decided(self) -> None:
        """Approved implies stored; a review status is what the recorded decisions of the
        image's current round say, and the round is one more than its revokes."""
        decisions: dict[int, list[tuple[int, str]]] = {}
        for image_id, round_, decision in ReviewDecision.objects.order_by("pk").values_list(
            "image_id", "round", "decision"
        ):
            decisions.setdefault(image_id, []).append((round_, decision))
        rows = GeneratedImage.objects.values_list(
            "pk", "status", "file", "review_status", "review_round"
        )
        for pk, status, file, review_status, review_round in rows:
            made = decisions.get(pk, [])
            if status != ImageStatus.SUCCEEDED:
                assert review_status == ReviewStatus.NONE and not made, (pk, status, made)
                continue
            assert review_status != ReviewStatus.NONE and file
            assert review_round == 1 + sum(d == Decision.REVOKE for _r, d in made)
            current = [d for r, d in made if r == review_round]
            if Decision.REJECT in current:
                expected = ReviewStatus.REJECTED
            elif current.count(Decision.APPROVE) >= self.campaign.required_approvals:
                expected = ReviewStatus.APPROVED
            else:
                expected = ReviewStatus.PENDING
            assert review_status == expected, (pk, made)

    # -- the end: every task and image ends within its deadline -------------------------------

    def teardown(self) -> None:
        try:
            if hasattr(self, "campaign"):
                self.run_until_everything_ended()
        finally:
            transaction.set_rollback(True)
            self.atomic.__exit__(None, None, None)
            ModelProvider.remote = None
            shutil.rmtree(self.context.media_root, ignore_errors=True)
            self.context.media_root.mkdir(parents=True)

    def run_until_everything_ended(self) -> None:
        """Time passes until nothing is open. No more faults are injected, but the provider,
        its reads and the CDN stay as they are: a provider that never finishes, or a CDN
        that stays down, must still end the rows, in a failure."""
        self.remote.next_submit = "ok"
        self.run_for(self.clock() + timedelta(days=1), stop_when_all_ended=True)
        self.check_invariants_now()
        assert not self.open_rows(), f"still open at the end: {self.open_rows()}"
        for status in GeneratedImage.objects.values_list("status", flat=True):
            event(f"an image ended {status}")
        for status in GeneratedImage.objects.values_list("review_status", flat=True):
            event(f"an image's review ended {status}")
        self.check_deadlines()

    def anything_open(self) -> bool:
        return (
            GenerationTask.objects.exclude(status__in=TERMINAL_TASK_STATUSES).exists()
            or GeneratedImage.objects.filter(status__in=OPEN_IMAGE_STATUSES).exists()
        )

    def open_rows(self) -> list[str]:
        tasks = GenerationTask.objects.exclude(status__in=TERMINAL_TASK_STATUSES)
        images = GeneratedImage.objects.filter(status__in=OPEN_IMAGE_STATUSES)
        return [f"task {t.pk} {t.status}" for t in tasks] + [
            f"image {i.pk} {i.status}" for i in images
        ]

    def check_invariants_now(self) -> None:
        self.statuses_never_go_back()
        self.images_follow_their_task()
        self.one_stored_file_per_output_and_no_orphans()
        self.at_most_one_submit_per_task()
        self.no_unexpected_download()
        self.reviews_only_of_stored_images_and_as_decided()

    def check_deadlines(self) -> None:
        """Each task ended by its deadline: time to get it submitted (every attempt may need
        a lease to expire, the reconciler to notice and a backoff), then TASK_TIMEOUT at the
        provider, then the reconciler's delay; each image by TASK_TIMEOUT after its task
        (downloads are retried that long) plus the reconciler's delay."""
        lease = 4 * PROVIDER_TIMEOUT + 30
        notice = TIMINGS["RECONCILE_AFTER"] + TIMINGS["RECONCILE_INTERVAL"]
        backoff = 2.0 * 2 ** (TIMINGS["SUBMIT_MAX_ATTEMPTS"] - 1)
        submitting = TIMINGS["SUBMIT_MAX_ATTEMPTS"] * (lease + notice + backoff)
        running = TIMINGS["TASK_TIMEOUT"] + notice + TIMINGS["POLL_MAX_INTERVAL"]
        for task in GenerationTask.objects.all():
            started = self.started_at[task.pk]
            if task.submitted_at is None:  # ended before the provider had it
                deadline = started + timedelta(seconds=submitting)
            else:
                assert task.submitted_at <= started + timedelta(seconds=submitting), task.pk
                deadline = task.submitted_at + timedelta(seconds=running)
            assert self.ended_at[task.pk] <= deadline, (task.pk, task.status, task.error_message)
            for image in task.images.all():
                image_deadline = self.ended_at[task.pk] + timedelta(
                    seconds=TIMINGS["TASK_TIMEOUT"] + notice + 60
                )
                assert self.image_ended_at[image.pk] <= image_deadline, (image.pk, image.status)


_current_queue: list[PipelineMachine] = [None]  # type: ignore[list-item]
_current_cdn: list[FakeCDN] = [None]  # type: ignore[list-item]


@pytest.fixture
def model_world(monkeypatch: pytest.MonkeyPatch, settings: Any, tmp_path: Path) -> Context:
    settings.IMAGEN_ASSETS = imagen_settings(
        DEFAULT_PROVIDER=ALIAS,
        PROVIDERS={
            ALIAS: {
                "BACKEND": f"{__name__}.ModelProvider",
                "OPTIONS": {"TIMEOUT": PROVIDER_TIMEOUT, "RESULT_HOSTS": [CDN_HOST]},
            }
        },
        **TIMINGS,
    )
    media_root = Path(django_settings.MEDIA_ROOT)
    media_root.mkdir(parents=True, exist_ok=True)
    clock = Clock(timezone.now().replace(microsecond=0))
    monkeypatch.setattr(timezone, "now", clock)
    monkeypatch.setattr(
        queueing, "enqueue", lambda *args, **kwargs: _current_queue[0].enqueue(*args, **kwargs)
    )
    real_download = downloads.download

    def download(url: str, **kwargs: Any) -> downloads.Downloaded:
        return real_download(
            url,
            **kwargs,
            transport=httpx.MockTransport(lambda request: _current_cdn[0].handle(request)),
            resolver=lambda host, port: [CDN_ADDRESS] if host == CDN_HOST else [],
        )

    monkeypatch.setattr(ingest, "download", download)
    return Context(clock, media_root)


def test_any_sequence_keeps_the_invariants_and_everything_ends_in_time(
    model_world: Context,
) -> None:
    PipelineMachine.context = model_world
    SEEN.clear()
    run_state_machine_as_test(
        PipelineMachine,
        settings=settings(
            max_examples=100,
            stateful_step_count=30,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    print("\n".join(f"{count:6d}  {what}" for what, count in sorted(SEEN.items())))
