"""The sandbox's Wave API (docs/providers.md section 1) over real HTTP."""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import httpx
import pytest

from imagen_assets.sandbox import SandboxConfig, SandboxServer, callbacks

TASK_ID = re.compile(r"^task-wave\d{10}[a-z]\d{9}$")


def submit(client: httpx.Client, **fields: Any) -> httpx.Response:
    body = {"model": "imagen-4.0", "prompt": "a lighthouse at dawn", **fields}
    return client.post("/v1/tasks", json=body)


def wait_terminal(client: httpx.Client, wait_until: Any, task_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        data = client.get(f"/v1/tasks/{task_id}").json()
        return data if data["status"] in ("completed", "failed", "cancelled") else None

    return wait_until(done)


class TestSubmitAndStatus:
    def test_submit_answers_a_queued_task_in_the_documented_shape(self, client, sandbox):
        before = time.time()
        response = submit(client, n=2)

        assert response.status_code == 200
        data = response.json()
        assert set(data) == {
            "task_id",
            "model",
            "action",
            "status",
            "created_at",
            "progress",
            "pre_consumed_cost",
        }
        assert TASK_ID.match(data["task_id"])
        assert data["model"] == "imagen-4.0"
        assert data["action"] == "generate"
        assert data["status"] == "queued"
        assert data["progress"] == 0
        assert data["pre_consumed_cost"] == 2 * 21250
        assert before * 1000 - 5 <= data["created_at"] <= time.time() * 1000 + 5
        assert sandbox.stats["wave_submits"] == 1

    def test_task_completes_after_the_latency_with_one_item_per_image(
        self, client, sandbox, wait_until
    ):
        sandbox.config.latency = 0.2
        started = time.monotonic()
        task_id = submit(client, n=3).json()["task_id"]

        data = wait_terminal(client, wait_until, task_id)

        assert time.monotonic() - started >= 0.2
        assert data["status"] == "completed"
        assert data["progress"] == 100
        assert data["cost"] == 3 * 21250
        assert data["completed_at"] >= data["created_at"]
        images = data["result"]["images"]
        assert len(images) == 3
        for item in images:
            assert len(item["url"]) == 1
            assert item["url"][0].startswith(f"{sandbox.url}/files/")
            # URLs are valid for 24 hours (the Imagen page); timestamps in ms by default.
            assert item["expires_at"] == data["completed_at"] + 24 * 3600 * 1000
        assert "error" not in data
        base = f"{sandbox.url}/v1/tasks/{task_id}"
        assert data["urls"] == {"get": base, "cancel": f"{base}/cancel"}

    def test_progress_moves_while_processing(self, client, sandbox, wait_until):
        sandbox.config.latency = 0.5
        task_id = submit(client).json()["task_id"]
        seen: list[int] = []

        def record() -> bool:
            data = client.get(f"/v1/tasks/{task_id}").json()
            if data["status"] == "processing":
                seen.append(data["progress"])
            return data["status"] == "completed"

        wait_until(record)

        assert len(seen) >= 2
        assert seen == sorted(seen)
        assert 0 <= seen[0] < seen[-1] < 100

    def test_non_terminal_status_has_no_terminal_fields(self, client, sandbox):
        sandbox.config.latency = 5
        task_id = submit(client).json()["task_id"]

        data = client.get(f"/v1/tasks/{task_id}").json()

        assert data["status"] in ("queued", "processing")
        for absent in ("completed_at", "cost", "result", "error"):
            assert absent not in data

    def test_unknown_task_is_404_task_not_found(self, client):
        response = client.get("/v1/tasks/task-wave1775285160b950328499")

        assert response.status_code == 404
        assert response.json() == {"error": {"message": "task not found", "code": "task_not_found"}}

    def test_prefer_wait_returns_the_terminal_object(self, client):
        response = client.post(
            "/v1/tasks",
            json={"model": "imagen-4.0", "prompt": "p"},
            headers={"Prefer": "wait=5"},
        )

        data = response.json()
        assert data["status"] == "completed"
        assert len(data["result"]["images"]) == 1
        assert data["cost"] == 21250

    def test_prefer_wait_that_runs_out_returns_the_current_state(self, client, sandbox):
        sandbox.config.latency = 5
        response = client.post(
            "/v1/tasks",
            json={"model": "imagen-4.0", "prompt": "p"},
            headers={"Prefer": "wait=0.1"},
        )

        data = response.json()
        assert data["status"] in ("queued", "processing")
        assert data["pre_consumed_cost"] == 21250
        assert "result" not in data


class TestAuthentication:
    @pytest.mark.parametrize(
        "headers",
        [{}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"}],
        ids=["missing", "not-bearer", "empty-token"],
    )
    def test_requests_without_a_bearer_token_are_401(self, sandbox, anonymous, headers):
        for method, path in [
            ("POST", "/v1/tasks"),
            ("GET", "/v1/tasks/task-wave1"),
            ("POST", "/v1/tasks/task-wave1/cancel"),
        ]:
            response = anonymous.request(method, path, headers=headers, json={})
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "invalid_api_key"
        assert sandbox.stats["unauthorized"] == 3

    def test_configured_api_key_is_the_only_one_accepted(self, sandbox, anonymous):
        sandbox.config.api_key = "sk-right"
        body = {"model": "imagen-4.0", "prompt": "p"}

        wrong = anonymous.post("/v1/tasks", json=body, headers={"Authorization": "Bearer sk-wrong"})
        right = anonymous.post("/v1/tasks", json=body, headers={"Authorization": "Bearer sk-right"})

        assert wrong.status_code == 401
        assert right.status_code == 200


class TestValidation:
    @pytest.mark.parametrize(
        ("fields", "code", "param"),
        [
            ({"model": "imagen-3.0"}, "model_not_found", "model"),
            ({"model": None}, "invalid_request", "model"),
            ({"action": "edit"}, "capability_violation", "action"),
            ({"prompt": None}, "invalid_request", "prompt"),
            ({"prompt": "   "}, "invalid_request", "prompt"),
            ({"prompt": 42}, "invalid_request", "prompt"),
            ({"n": 5}, "capability_violation", "n"),
            ({"n": 0}, "invalid_request", "n"),
            ({"n": "2"}, "invalid_request", "n"),
            ({"n": True}, "invalid_request", "n"),
            ({"seed": 1.5}, "invalid_request", "seed"),
            ({"aspect_ratio": "3:2"}, "invalid_aspect_ratio", "aspect_ratio"),
            ({"resolution": "2K"}, "capability_violation", "resolution"),
            ({"size": "1024x1024"}, "capability_violation", "size"),
            ({"extra": {"sample_count": 2}}, "capability_violation", "extra"),
            ({"callback_url": "ftp://example.com/x"}, "invalid_request", "callback_url"),
            ({"callback_events": ["done"]}, "invalid_request", "callback_events"),
            ({"callback_events": "completed"}, "invalid_request", "callback_events"),
        ],
    )
    def test_invalid_submit_is_400_with_code_and_param(self, client, sandbox, fields, code, param):
        body = {"model": "imagen-4.0", "prompt": "p", **fields}
        body = {k: v for k, v in body.items() if v is not None}

        response = client.post("/v1/tasks", json=body)

        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == code
        assert error["param"] == param
        assert error["message"]
        assert sandbox.stats["wave_submits"] == 0

    def test_accepted_optional_fields(self, client):
        response = submit(
            client,
            action="generate",
            n=4,
            seed=7,
            aspect_ratio="9:16",
            resolution="",
            callback_url="http://127.0.0.1:9/x",
            callback_events=["completed", "failed", "cancelled", "succeeded"],
            extra={},
        )

        assert response.status_code == 200

    def test_body_that_is_not_json_is_400(self, client):
        response = client.post(
            "/v1/tasks", content=b"{not json", headers={"Content-Type": "application/json"}
        )

        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_request"


class TestIdempotency:
    def test_same_key_returns_the_original_task_without_creating_another(self, client, sandbox):
        headers = {"Idempotency-Key": "order-42"}
        first = client.post(
            "/v1/tasks", json={"model": "imagen-4.0", "prompt": "p"}, headers=headers
        )
        second = client.post(
            "/v1/tasks", json={"model": "imagen-4.0", "prompt": "p"}, headers=headers
        )
        other = client.post(
            "/v1/tasks",
            json={"model": "imagen-4.0", "prompt": "p"},
            headers={"Idempotency-Key": "order-43"},
        )

        assert first.json()["task_id"] == second.json()["task_id"]
        assert other.json()["task_id"] != first.json()["task_id"]
        stats = sandbox.stats
        assert stats["wave_submits"] == 2
        assert stats["wave_idempotent_replays"] == 1
        assert stats["tasks"] == 2

    def test_concurrent_submits_with_one_key_create_one_task(self, sandbox, client):
        ids: list[str] = []
        lock = threading.Lock()

        def post() -> None:
            response = client.post(
                "/v1/tasks",
                json={"model": "imagen-4.0", "prompt": "p"},
                headers={"Idempotency-Key": "same"},
            )
            with lock:
                ids.append(response.json()["task_id"])

        threads = [threading.Thread(target=post) for _ in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert len(set(ids)) == 1
        assert sandbox.stats["wave_submits"] == 1
        assert sandbox.stats["wave_idempotent_replays"] == 9


class TestCancel:
    def test_queued_task_can_be_cancelled_and_is_refunded(self, client, sandbox):
        # One slot, held by a long task, keeps the second one queued.
        sandbox.config.update(max_concurrency=1, latency=5)
        submit(client)
        task_id = submit(client, n=2).json()["task_id"]

        response = client.post(f"/v1/tasks/{task_id}/cancel")

        assert response.status_code == 200
        assert response.json() == {
            "task_id": task_id,
            "status": "cancelled",
            "refunded": True,
            "refunded_quota": 2 * 21250,
        }
        data = client.get(f"/v1/tasks/{task_id}").json()
        assert data["status"] == "cancelled"
        assert data["cost"] == 0
        assert data["progress"] == 0
        assert "completed_at" in data
        assert "result" not in data
        stats = sandbox.stats
        assert stats["wave_cancels"] == 1
        assert stats["waiting"] == 0

    def test_cancelling_twice_or_after_the_queue_is_task_not_cancellable(
        self, client, sandbox, wait_until
    ):
        sandbox.config.update(max_concurrency=1, latency=2)
        running = submit(client).json()["task_id"]
        queued = submit(client).json()["task_id"]
        client.post(f"/v1/tasks/{queued}/cancel")

        again = client.post(f"/v1/tasks/{queued}/cancel")

        assert again.status_code == 400
        assert again.json()["error"]["code"] == "task_not_cancellable"
        # The first task leaves "queued" after its short queued phase (10% of the latency).
        wait_until(lambda: client.get(f"/v1/tasks/{running}").json()["status"] == "processing")
        processing = client.post(f"/v1/tasks/{running}/cancel")
        assert processing.status_code == 400
        assert processing.json()["error"]["code"] == "task_not_cancellable"

    def test_cancel_of_unknown_task_is_404(self, client):
        response = client.post("/v1/tasks/task-wave1775285160b950328499/cancel")

        assert response.status_code == 404
        assert response.json()["error"]["code"] == "task_not_found"

    def test_cancel_frees_the_slot_for_the_next_task(self, client, sandbox, wait_until):
        sandbox.config.update(max_concurrency=1, latency=0.15)
        first = submit(client).json()["task_id"]
        doomed = submit(client).json()["task_id"]
        third = submit(client).json()["task_id"]

        client.post(f"/v1/tasks/{doomed}/cancel")

        assert wait_terminal(client, wait_until, first)["status"] == "completed"
        assert wait_terminal(client, wait_until, third)["status"] == "completed"


class TestStyleKnobs:
    def test_percent_progress_style(self, client, sandbox, wait_until):
        # Latency 5 s: the task stays queued for 0.5 s, plenty of time to look at it.
        sandbox.config.update(wave_progress_style="percent", latency=5)
        submitted = submit(client).json()
        queued = client.get(f"/v1/tasks/{submitted['task_id']}").json()
        sandbox.config.latency = 0.2
        ok = submit(client).json()["task_id"]
        seen: list[str] = []

        def record() -> bool:
            data = client.get(f"/v1/tasks/{ok}").json()
            if data["status"] == "processing":
                seen.append(data["progress"])
            return data["status"] == "completed"

        wait_until(record)
        failed = submit(client, prompt="[fail] broken").json()["task_id"]

        assert submitted["progress"] == 0  # the submit answer is an int in every generation
        assert queued["status"] == "queued"
        assert queued["progress"] == ""
        assert seen
        assert all(re.fullmatch(r"\d{1,2}%", value) for value in seen)
        assert client.get(f"/v1/tasks/{ok}").json()["progress"] == "100%"
        assert wait_terminal(client, wait_until, failed)["progress"] == "100%"

    def test_int_progress_style_reports_failed_as_zero(self, client, wait_until):
        task_id = submit(client, prompt="[fail] x").json()["task_id"]

        assert wait_terminal(client, wait_until, task_id)["progress"] == 0

    def test_second_timestamps(self, client, sandbox, wait_until):
        sandbox.config.wave_timestamps = "s"
        submitted = submit(client).json()

        data = wait_terminal(client, wait_until, submitted["task_id"])

        assert len(str(submitted["created_at"])) == 10
        assert abs(submitted["created_at"] - time.time()) < 5
        assert len(str(data["completed_at"])) == 10
        assert data["result"]["images"][0]["expires_at"] == data["completed_at"] + 24 * 3600

    def test_millisecond_timestamps_by_default(self, client, wait_until):
        submitted = submit(client).json()

        data = wait_terminal(client, wait_until, submitted["task_id"])

        assert len(str(submitted["created_at"])) == 13
        assert len(str(data["completed_at"])) == 13

    def test_string_url_style(self, client, sandbox, wait_until):
        sandbox.config.wave_url_style = "string"
        task_id = submit(client, n=2).json()["task_id"]

        data = wait_terminal(client, wait_until, task_id)

        urls = [item["url"] for item in data["result"]["images"]]
        assert all(isinstance(url, str) and url.startswith(sandbox.url) for url in urls)


class TestFailuresAndFiltering:
    def test_fail_marker_fails_with_the_documented_error(self, client, wait_until):
        task_id = submit(client, prompt="logo [fail]").json()["task_id"]

        data = wait_terminal(client, wait_until, task_id)

        assert data["status"] == "failed"
        assert data["cost"] == 0
        assert data["error"] == {
            "message": "[upstream_bad_request] Upstream returned: invalid prompt",
            "code": "upstream_bad_request",
        }
        assert "result" not in data

    def test_filter_marker_returns_one_image_fewer_and_charges_only_delivered(
        self, client, wait_until
    ):
        task_id = submit(client, prompt="beach [filter]", n=3).json()["task_id"]

        data = wait_terminal(client, wait_until, task_id)

        assert data["status"] == "completed"
        assert len(data["result"]["images"]) == 2
        assert data["cost"] == 2 * 21250


class TestCallbacks:
    def test_terminal_status_object_is_posted_to_callback_url(self, client, receiver, wait_until):
        task_id = submit(client, callback_url=receiver.url).json()["task_id"]

        (callback,) = receiver.wait_for(1)
        polled = client.get(f"/v1/tasks/{task_id}").json()

        assert callback.path == "/hook"
        assert callback.headers["content-type"] == "application/json"
        assert callback.json() == polled
        assert callback.json()["status"] == "completed"
        # Wave documents no signature; the sandbox sends none.
        assert not any(name.startswith("webhook-") for name in callback.headers)

    def test_failed_task_callback_carries_the_error(self, client, receiver):
        submit(client, prompt="[fail]", callback_url=receiver.url)

        (callback,) = receiver.wait_for(1)

        assert callback.json()["status"] == "failed"
        assert callback.json()["error"]["code"] == "upstream_bad_request"

    def test_cancelled_task_triggers_a_callback(self, client, sandbox, receiver):
        sandbox.config.update(max_concurrency=1, latency=5)
        submit(client)
        task_id = submit(client, callback_url=receiver.url).json()["task_id"]
        client.post(f"/v1/tasks/{task_id}/cancel")

        (callback,) = receiver.wait_for(1)

        assert callback.json()["status"] == "cancelled"

    def test_callback_events_filter_and_legacy_alias(self, client, sandbox, receiver, wait_until):
        only_failed = submit(client, callback_url=receiver.url, callback_events=["failed"])
        legacy = submit(client, callback_url=receiver.url, callback_events=["succeeded"])

        (callback,) = receiver.wait_for(1)
        wait_terminal(client, wait_until, only_failed.json()["task_id"])
        time.sleep(0.2)  # time for a wrongly sent callback to arrive

        assert callback.json()["task_id"] == legacy.json()["task_id"]
        assert len(receiver.requests) == 1

    def test_failed_delivery_is_retried(self, client, sandbox, receiver, wait_until):
        receiver.answers = [500]
        submit(client, callback_url=receiver.url)

        first, second = receiver.wait_for(2)

        assert first.body == second.body
        assert 0.4 <= second.at - first.at < 2.0  # the first backoff is 0.5 s
        # The receiver records a request before answering, the sandbox counts after.
        wait_until(lambda: sandbox.stats["callbacks_sent"] == 1)
        assert sandbox.stats["callback_attempts"] == 2

    def test_unreachable_callback_url_gives_up_after_three_retries(
        self, client, sandbox, wait_until, monkeypatch
    ):
        # A closed port refuses at once; shrink the 0.5/1/2 s backoff to keep the test fast.
        monkeypatch.setattr(callbacks, "RETRY_BACKOFF", (0.01, 0.02, 0.04))
        sandbox.config.latency = 0
        submit(client, callback_url="http://127.0.0.1:9/x")

        wait_until(lambda: sandbox.stats["callbacks_failed"] == 1)

        assert sandbox.stats["callback_attempts"] == 4
        assert sandbox.stats["callbacks_sent"] == 0

    def test_drop_callbacks_delivers_nothing(self, client, sandbox, receiver, wait_until):
        sandbox.config.drop_callbacks = True
        task_id = submit(client, callback_url=receiver.url).json()["task_id"]

        wait_terminal(client, wait_until, task_id)
        time.sleep(0.2)

        assert receiver.requests == []
        assert sandbox.stats["callbacks_dropped"] == 1

    def test_duplicate_callbacks_are_delivered_twice(self, client, sandbox, receiver, wait_until):
        sandbox.config.duplicate_callbacks = True
        submit(client, callback_url=receiver.url)

        first, second = receiver.wait_for(2)

        assert first.body == second.body
        wait_until(lambda: sandbox.stats["callbacks_sent"] == 2)

    def test_out_of_order_sends_the_callback_again_later(self, client, sandbox, receiver):
        sandbox.config.out_of_order = True
        submit(client, callback_url=receiver.url)

        first, second = receiver.wait_for(2)

        assert first.json()["status"] == second.json()["status"] == "completed"
        assert second.at - first.at >= 0.15


def test_config_object_is_shared_not_copied() -> None:
    config = SandboxConfig(latency=0.05)
    server = SandboxServer(config)
    try:
        assert server.config is config
    finally:
        server.stop()
