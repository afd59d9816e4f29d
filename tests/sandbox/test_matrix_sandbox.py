"""The sandbox knobs the queue-drain benchmark uses (docs/reliability.md L2): 503s on a
share of submits, and a latency that varies from task to task."""

from __future__ import annotations

import pytest

from imagen_assets.sandbox import SandboxConfig
from imagen_assets.sandbox.cli import build_parser, config_from_options
from imagen_assets.sandbox.wave import API as WAVE


class TestUnavailableRate:
    def test_rate_one_answers_503_on_both_apis_and_only_to_submits(self, client, sandbox):
        created = client.post("/v1/tasks", json={"model": "imagen-4.0", "prompt": "p"})
        sandbox.config.unavailable_rate = 1.0

        wave = client.post("/v1/tasks", json={"model": "imagen-4.0", "prompt": "p"})
        wavespeed = client.post("/api/v3/wavespeed-ai/imagen4", json={"prompt": "p"})

        assert wave.status_code == 503
        assert wave.json()["error"]["code"] == "service_unavailable"
        assert wavespeed.status_code == 503
        assert wavespeed.json()["code"] == 503
        assert sandbox.stats["unavailable"] == 2
        assert client.get(f"/v1/tasks/{created.json()['task_id']}").status_code == 200

    def test_rate_zero_never_does(self, client, sandbox):
        for _ in range(20):
            assert (
                client.post("/api/v3/wavespeed-ai/imagen4", json={"prompt": "p"}).status_code < 300
            )
        assert sandbox.stats["unavailable"] == 0

    @pytest.mark.parametrize("value", [-0.1, 1.5])
    def test_out_of_range_is_refused(self, value):
        with pytest.raises(ValueError, match="unavailable_rate"):
            SandboxConfig(unavailable_rate=value)


class TestLatencyJitter:
    def test_each_task_takes_the_latency_plus_up_to_the_jitter(self, client, sandbox, wait_until):
        sandbox.config.latency = 0.1
        sandbox.config.latency_jitter = 0.4
        ids = [
            client.post("/v1/tasks", json={"model": "imagen-4.0", "prompt": f"p{i}"}).json()[
                "task_id"
            ]
            for i in range(12)
        ]

        def all_completed() -> bool:
            return all(
                client.get(f"/v1/tasks/{task_id}").json()["status"] == "completed"
                for task_id in ids
            )

        wait_until(all_completed, 10)
        durations = [sandbox._engine.get(WAVE, task_id).duration for task_id in ids]
        assert all(0.1 <= d <= 0.5 for d in durations), durations
        assert len(set(durations)) == len(durations)  # drawn per task

    def test_negative_is_refused(self):
        with pytest.raises(ValueError, match="latency_jitter"):
            SandboxConfig(latency_jitter=-1)


def test_the_flags_reach_the_config():
    options = build_parser().parse_args(["--unavailable-rate", "0.05", "--latency-jitter", "0.4"])
    config = config_from_options(vars(options))
    assert (config.unavailable_rate, config.latency_jitter) == (0.05, 0.4)
