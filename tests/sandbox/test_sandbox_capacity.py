"""The sandbox's concurrency cap: ``--max-concurrency N --over-capacity reject`` answers a
submit with 429 while N tasks are in progress (submitted, not yet terminal), and the stats
report the 429s (``over_capacity``) and the most tasks ever in progress at once
(``peak_in_progress``), so a benchmark can tell whether its clients kept under the cap."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from imagen_assets.sandbox import SandboxConfig
from imagen_assets.sandbox.cli import build_parser, config_from_options

WAVESPEED_SUBMIT = "/api/v3/wavespeed-ai/imagen4"
AUTH = {"Authorization": "Bearer t"}


def submit_wavespeed(client: httpx.Client, prompt: str = "a lighthouse") -> httpx.Response:
    return client.post(WAVESPEED_SUBMIT, json={"prompt": prompt})


class TestReject:
    def test_a_submit_beyond_the_cap_is_answered_429_in_wavespeeds_shape(self, client, sandbox):
        sandbox.config.update(max_concurrency=2, over_capacity="reject", latency=30)

        first, second, third = (submit_wavespeed(client, f"p{i}") for i in range(3))

        assert (first.status_code, second.status_code) == (200, 200)
        assert third.status_code == 429
        assert third.headers["Retry-After"] == "1"
        body = third.json()
        assert body["code"] == 429 and body["data"] is None
        assert "limit is 2" in body["message"]
        stats = sandbox.stats
        assert stats["wavespeed_submits"] == 2
        assert stats["over_capacity"] == 1
        assert stats["rate_limited"] == 0  # the rate-limit knobs' counter is separate
        assert stats["peak_in_progress"] == 2
        assert stats["tasks"] == 2  # the refused submit registered nothing

    def test_wave_protocol_gets_its_documented_429(self, client, sandbox):
        sandbox.config.update(max_concurrency=1, over_capacity="reject", latency=30)
        body = {"model": "imagen-4.0", "prompt": "a lighthouse"}

        accepted = client.post("/v1/tasks", json=body)
        refused = client.post("/v1/tasks", json=body, headers={"Idempotency-Key": "k-1"})

        assert accepted.status_code == 200
        assert refused.status_code == 429
        answer = refused.json()
        assert answer["error"]["code"] == "quota_window_exceeded"
        assert (answer["used"], answer["cap"]) == (1, 1)
        # The refused key was not used up: once there is room, the same key creates a task.
        sandbox.config.update(max_concurrency=2)
        again = client.post("/v1/tasks", json=body, headers={"Idempotency-Key": "k-1"})
        assert again.status_code == 200
        assert sandbox.stats["wave_idempotent_replays"] == 0
        assert sandbox.stats["wave_submits"] == 2

    def test_a_finished_task_frees_its_place(self, client, sandbox, wait_until):
        sandbox.config.update(max_concurrency=1, over_capacity="reject", latency=0.2)

        assert submit_wavespeed(client).status_code == 200
        assert submit_wavespeed(client).status_code == 429
        wait_until(lambda: sandbox.stats["tasks_completed"] == 1)

        assert submit_wavespeed(client).status_code == 200
        assert sandbox.stats["over_capacity"] == 1
        assert sandbox.stats["peak_in_progress"] == 1

    def test_concurrent_submits_never_overshoot_the_cap(self, sandbox):
        sandbox.config.update(max_concurrency=5, over_capacity="reject", latency=30)
        count = 16
        start = threading.Barrier(count)

        def post(index: int) -> int:
            with httpx.Client(base_url=sandbox.url, headers=AUTH, timeout=10) as http:
                http.get("/healthz")  # connected before the race: the submits go at once
                start.wait()
                return submit_wavespeed(http, f"p{index}").status_code

        with ThreadPoolExecutor(count) as pool:
            codes = list(pool.map(post, range(count)))

        assert sorted(codes) == [200] * 5 + [429] * (count - 5)
        stats = sandbox.stats
        assert stats["peak_in_progress"] == 5
        assert stats["over_capacity"] == count - 5
        assert stats["wavespeed_submits"] == 5

    def test_unlimited_by_default(self, client, sandbox):
        sandbox.config.update(over_capacity="reject", latency=30)

        codes = [submit_wavespeed(client, f"p{i}").status_code for i in range(10)]

        assert codes == [200] * 10
        assert sandbox.stats["over_capacity"] == 0
        assert sandbox.stats["peak_in_progress"] == 10


class TestQueue:
    def test_queued_tasks_count_as_in_progress_and_nothing_is_refused(self, client, sandbox):
        sandbox.config.update(max_concurrency=1, latency=30)  # over_capacity="queue"

        codes = [submit_wavespeed(client, f"p{i}").status_code for i in range(3)]

        assert codes == [200, 200, 200]
        stats = sandbox.stats
        assert (stats["active"], stats["waiting"]) == (1, 2)
        assert stats["peak_in_progress"] == 3
        assert stats["over_capacity"] == 0


class TestFlag:
    def test_the_flags_reach_the_config(self):
        argv = ["--max-concurrency", "50", "--over-capacity", "reject"]
        options = build_parser().parse_args(argv)

        config = config_from_options(vars(options))

        assert (config.max_concurrency, config.over_capacity) == (50, "reject")
        assert SandboxConfig().over_capacity == "queue"

    def test_an_unknown_choice_is_refused(self, capsys):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--over-capacity", "drop"])
        assert "invalid choice" in capsys.readouterr().err

    def test_the_config_endpoint_refuses_an_unknown_choice(self, client, sandbox):
        answer = client.post("/_sandbox/config", json={"over_capacity": "drop"})

        assert answer.status_code == 400
        assert sandbox.config.over_capacity == "queue"
