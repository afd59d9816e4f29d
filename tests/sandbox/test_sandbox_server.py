"""Behaviour shared by both simulated APIs: images, fault knobs, concurrency, lifecycle."""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from PIL import Image

from imagen_assets.sandbox import SandboxConfig, SandboxServer, sign_wavespeed_webhook
from imagen_assets.sandbox.images import ImageSpec, render_image

AUTH = {"Authorization": "Bearer t"}


def wave_done(client: httpx.Client, **fields: Any) -> dict[str, Any]:
    """Submit a Wave task and wait for it in the same request (``Prefer: wait``)."""
    body = {"model": "imagen-4.0", "prompt": "a lighthouse", **fields}
    response = client.post("/v1/tasks", json=body, headers={"Prefer": "wait=10"})
    assert response.status_code == 200, response.text
    return response.json()


def wave_image(client: httpx.Client, **fields: Any) -> bytes:
    data = wave_done(client, **fields)
    return client.get(data["result"]["images"][0]["url"][0]).content


class TestImages:
    @pytest.mark.parametrize(
        ("aspect_ratio", "size"),
        [
            ("1:1", (2048, 2048)),
            ("3:4", (1792, 2560)),
            ("4:3", (2560, 1792)),
            ("9:16", (1536, 2816)),
            ("16:9", (2816, 1536)),
        ],
    )
    def test_wave_serves_2k_jpegs_at_googles_sizes(self, client, aspect_ratio, size):
        image = Image.open(io.BytesIO(wave_image(client, aspect_ratio=aspect_ratio)))

        assert image.format == "JPEG"
        assert image.size == size
        assert image.mode == "RGB"

    def test_a_fixed_seed_reproduces_the_same_bytes(self, client):
        first = wave_image(client, seed=1234)
        second = wave_image(client, seed=1234)
        other_seed = wave_image(client, seed=1235)
        other_prompt = wave_image(client, seed=1234, prompt="something else")

        assert first == second
        assert first != other_seed
        assert first != other_prompt

    def test_images_of_one_task_differ(self, client):
        data = wave_done(client, n=2, seed=5)
        first, second = (client.get(item["url"][0]).content for item in data["result"]["images"])

        assert first != second

    def test_files_need_no_auth_and_unknown_files_are_404(self, sandbox, client, anonymous):
        url = wave_done(client)["result"]["images"][0]["url"][0]

        assert anonymous.get(url).status_code == 200
        assert anonymous.get(f"/files/{'0' * 32}.jpg").status_code == 404
        assert sandbox.stats["downloads"] == 1

    def test_png_format_knob(self, client, sandbox):
        sandbox.config.image_format = "png"
        data = wave_done(client)

        url = data["result"]["images"][0]["url"][0]
        response = client.get(url)
        assert url.endswith(".png")
        assert response.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(response.content)).format == "PNG"

    def test_render_is_deterministic_and_exact(self):
        spec = ImageSpec("Wave · imagen-4.0", "16:9", 2816, 1536, 7, "café 日出 poster", 0)

        data = render_image(spec)

        assert data == render_image(spec)
        assert Image.open(io.BytesIO(data)).size == (2816, 1536)

    def test_render_of_a_2k_jpeg_is_fast(self):
        render_image(ImageSpec("Wave · imagen-4.0", "1:1", 2048, 2048, 1, "warm-up", 0))
        timings = []
        for index in range(5):
            # CPU time of this thread: what the render costs, whatever else the machine runs.
            started = time.thread_time()
            render_image(ImageSpec("Wave · imagen-4.0", "1:1", 2048, 2048, 1, "speed", index))
            timings.append(time.thread_time() - started)

        assert sorted(timings)[2] < 0.15  # the budget is 150 ms on one core


class TestFaultKnobs:
    def test_rate_limit_next_answers_429_with_retry_after_on_both_apis(self, client, sandbox):
        sandbox.config.rate_limit_next = 2

        wave = client.post("/v1/tasks", json={"model": "imagen-4.0", "prompt": "p"})
        wavespeed = client.post("/api/v3/wavespeed-ai/imagen4", json={"prompt": "p"})
        after = client.post("/v1/tasks", json={"model": "imagen-4.0", "prompt": "p"})

        assert wave.status_code == 429
        assert wave.headers["Retry-After"] == "1"
        assert wave.json()["error"]["code"] == "quota_window_exceeded"
        assert {"window", "used", "cap", "reset_at"} <= set(wave.json())
        assert wavespeed.status_code == 429
        assert wavespeed.headers["Retry-After"] == "1"
        assert wavespeed.json() == {"code": 429, "message": "Too many requests", "data": None}
        assert after.status_code == 200
        stats = sandbox.stats
        assert stats["rate_limited"] == 2
        assert stats["wave_submits"] == 1
        assert stats["wavespeed_submits"] == 0
        assert sandbox.config.rate_limit_next == 0

    def test_rate_limits_apply_to_submits_only(self, client, sandbox):
        task_id = client.post("/v1/tasks", json={"model": "imagen-4.0", "prompt": "p"}).json()[
            "task_id"
        ]
        sandbox.config.rate_limit_rate = 1.0

        assert client.get(f"/v1/tasks/{task_id}").status_code == 200
        assert (
            client.post("/v1/tasks", json={"model": "imagen-4.0", "prompt": "p"}).status_code == 429
        )

    def test_server_error_next_answers_500_on_both_apis(self, client, sandbox):
        sandbox.config.server_error_next = 2

        wave = client.post("/v1/tasks", json={"model": "imagen-4.0", "prompt": "p"})
        wavespeed = client.post("/api/v3/wavespeed-ai/imagen4", json={"prompt": "p"})

        assert wave.status_code == 500
        assert wave.json() == {"error": {"message": "internal error", "code": "internal_error"}}
        assert wavespeed.status_code == 500
        assert wavespeed.json()["code"] == 500
        assert sandbox.stats["server_errors"] == 2
        assert sandbox.stats["tasks"] == 0

    def test_failure_rate_one_fails_everything(self, client, sandbox):
        sandbox.config.failure_rate = 1.0

        assert wave_done(client)["status"] == "failed"

    def test_filter_rate_one_drops_an_image_everywhere(self, client, sandbox):
        sandbox.config.filter_rate = 1.0

        data = wave_done(client, n=2)

        assert len(data["result"]["images"]) == 1


class TestConcurrency:
    def test_max_concurrency_keeps_extra_tasks_queued(self, client, sandbox, wait_until):
        # Only lower bounds on time are asserted, so a slow machine cannot break this test.
        sandbox.config.update(max_concurrency=2, latency=0.5)
        started = time.monotonic()
        ids = [
            client.post("/api/v3/wavespeed-ai/imagen4", json={"prompt": f"p{i}"}).json()["data"][
                "id"
            ]
            for i in range(4)
        ]
        # Tasks 3 and 4 cannot start before a slot frees at t >= 0.5 s.
        statuses = [
            client.get(f"/api/v3/predictions/{i}/result").json()["data"]["status"] for i in ids
        ]
        assert statuses[2:] == ["created", "created"]
        most_active = 0

        def all_done() -> bool:
            nonlocal most_active
            stats = sandbox.stats
            most_active = max(most_active, stats["active"])
            return stats["tasks_completed"] == 4

        wait_until(all_done)

        assert most_active == 2
        # Two waves: the latency clock of a waiting task starts when a slot frees.
        assert time.monotonic() - started >= 1.0
        assert sandbox.stats["active"] == sandbox.stats["waiting"] == 0

    def test_hundreds_of_tasks_at_once(self, sandbox, wait_until):
        sandbox.config.latency = 0.2
        count = 300

        def post(index: int) -> int:
            with_wave = index % 2 == 0
            path = "/v1/tasks" if with_wave else "/api/v3/google/imagen4-fast"
            body = {"prompt": f"p{index}"} | ({"model": "imagen-4.0"} if with_wave else {})
            return http.post(f"{sandbox.url}{path}", json=body).status_code

        with httpx.Client(headers=AUTH, timeout=10) as http, ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(post, range(count)))

        assert codes == [200] * count
        wait_until(lambda: sandbox.stats["tasks_completed"] == count)
        stats = sandbox.stats
        assert stats["wave_submits"] + stats["wavespeed_submits"] == count


class TestLifecycle:
    def test_stats_snapshot_has_every_documented_counter(self, sandbox):
        documented = {
            "wave_submits",
            "wavespeed_submits",
            "wave_polls",
            "wavespeed_polls",
            "downloads",
            "callbacks_sent",
            "callbacks_failed",
            "callbacks_dropped",
            "rate_limited",
            "active",
        }

        assert documented <= set(sandbox.stats)

    def test_polls_are_counted(self, client, sandbox):
        client.get("/v1/tasks/nope")
        client.get("/api/v3/predictions/nope/result")
        client.get("/api/v3/predictions/nope")

        assert sandbox.stats["wave_polls"] == 1
        assert sandbox.stats["wavespeed_polls"] == 2

    def test_stop_closes_the_port_and_is_idempotent(self):
        server = SandboxServer(SandboxConfig(latency=0.05)).start()
        url = server.url
        with httpx.Client(trust_env=False) as http:
            assert http.get(f"{url}/healthz").json() == {"ok": True}
            server.stop()
            server.stop()
            with pytest.raises(httpx.TransportError):
                http.get(f"{url}/healthz")

    def test_stop_releases_a_waiting_sync_request(self):
        server = SandboxServer(SandboxConfig(latency=30)).start()
        results: list[int] = []

        def sync_submit() -> None:
            try:
                response = httpx.post(
                    f"{server.url}/api/v3/wavespeed-ai/imagen4",
                    json={"prompt": "p", "enable_sync_mode": True},
                    headers=AUTH,
                    timeout=10,
                )
                results.append(response.status_code)
            except httpx.TransportError:
                results.append(-1)

        thread = threading.Thread(target=sync_submit)
        thread.start()
        time.sleep(0.2)
        started = time.monotonic()
        server.stop()
        thread.join(timeout=5)

        assert not thread.is_alive()
        assert time.monotonic() - started < 2
        assert results

    def test_keep_alive_connection_is_reused(self, sandbox):
        with httpx.Client(headers=AUTH, trust_env=False) as http:
            peers = set()
            for _ in range(5):
                response = http.get(f"{sandbox.url}/v1/tasks/nope", extensions={})
                stream = response.extensions["network_stream"]
                peers.add(stream.get_extra_info("client_addr"))

        assert len(peers) == 1

    def test_unknown_paths_and_wrong_methods(self, client):
        assert client.get("/v2/anything").status_code == 404
        wrong = client.get("/v1/tasks/abc/cancel")
        assert wrong.status_code == 405
        assert wrong.headers["Allow"] == "POST"

    def test_control_endpoint_changes_knobs_but_never_secrets(self, sandbox):
        with httpx.Client(base_url=sandbox.url, trust_env=False) as http:
            changed = http.post("/_sandbox/config", json={"latency": 0.05, "out_of_order": True})
            secret = http.post("/_sandbox/config", json={"webhook_secret": "whsec_x"})
            invalid = http.post("/_sandbox/config", json={"failure_rate": 2})
            unknown = http.post("/_sandbox/config", json={"colour": "red"})
            shown = http.get("/_sandbox/config").json()
            stats = http.get("/_sandbox/stats").json()

        assert changed.status_code == 200
        assert sandbox.config.latency == 0.05
        assert sandbox.config.out_of_order is True
        assert secret.status_code == invalid.status_code == unknown.status_code == 400
        assert sandbox.config.failure_rate == 0
        assert "webhook_secret" not in shown
        assert "api_key" not in shown
        assert shown["api_key_required"] is False
        assert "wave_submits" in stats

    def test_invalid_config_values_are_rejected(self):
        with pytest.raises(ValueError, match="failure_rate"):
            SandboxConfig(failure_rate=1.5)
        with pytest.raises(ValueError, match="wave_progress_style"):
            SandboxConfig(wave_progress_style="float")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="webhook_secret"):
            SandboxConfig(webhook_secret="nope")

    def test_webhook_secrets_are_random_per_config(self):
        assert SandboxConfig().webhook_secret != SandboxConfig().webhook_secret


def test_signing_helper_matches_a_hand_computed_vector() -> None:
    # printf 'msg_1.1700000000.{}' | openssl dgst -sha256 -hmac abc
    expected = "v3,75607373a5aad6a6374615e9b109af35452535a370c370767b897a18b0c93192"

    assert sign_wavespeed_webhook("whsec_abc", "msg_1", 1700000000, b"{}") == expected
    # The key is the text after the prefix, used as UTF-8 bytes, never base64-decoded.
    assert sign_wavespeed_webhook("abc", "msg_1", 1700000000, b"{}") == expected
