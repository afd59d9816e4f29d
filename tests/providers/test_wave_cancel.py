"""WaveProvider.cancel: ``POST /v1/tasks/{id}/cancel`` (docs/providers.md §1.5)."""

from __future__ import annotations

import pytest

from imagen_assets.providers import ProviderError
from imagen_assets.providers.wave import WaveProvider
from imagen_assets.providers.wavespeed import WaveSpeedProvider
from tests.mock_http import json_response

KEY = "wave-cancel-key-5d21"
BASE = "https://www.qingbo.dev"
TASK = "task-wave1775285160b950328499"
CANCEL = f"{BASE}/v1/tasks/{TASK}/cancel"


def wave(http) -> WaveProvider:
    return WaveProvider("wave", {"API_KEY": KEY}, client=http.client)


class WaveCancelTests:
    def test_a_queued_task_is_cancelled_and_refunded(self, mock_http) -> None:
        http = mock_http(
            (
                "POST",
                CANCEL,
                json_response(
                    200,
                    {
                        "task_id": TASK,
                        "status": "cancelled",
                        "refunded": True,
                        "refunded_quota": 21250,
                    },
                ),
            )
        )
        assert wave(http).cancel(TASK) is True
        sent = http.requests[0]
        assert sent.headers["Authorization"] == f"Bearer {KEY}"

    def test_a_processing_task_is_not_cancellable(self, mock_http) -> None:
        http = mock_http(
            (
                "POST",
                CANCEL,
                json_response(
                    400,
                    {
                        "error": {
                            "message": "task is processing and cannot be cancelled",
                            "code": "task_not_cancellable",
                        }
                    },
                ),
            )
        )
        assert wave(http).cancel(TASK) is False

    def test_another_refusal_is_an_error_without_the_key(self, mock_http) -> None:
        http = mock_http(
            (
                "POST",
                CANCEL,
                json_response(
                    404, {"error": {"message": "task not found", "code": "task_not_found"}}
                ),
            )
        )
        with pytest.raises(ProviderError) as caught:
            wave(http).cancel(TASK)
        assert caught.value.status_code == 404
        assert caught.value.code == "task_not_found"
        assert KEY not in str(caught.value)

    def test_an_answer_that_is_not_a_cancel_is_unexpected(self, mock_http) -> None:
        answer = json_response(200, {"task_id": TASK, "status": "queued"})
        http = mock_http(("POST", CANCEL, answer))
        with pytest.raises(ProviderError) as caught:
            wave(http).cancel(TASK)
        assert caught.value.unexpected

    def test_only_wave_declares_a_cancel(self) -> None:
        assert WaveProvider.supports_cancel
        assert not WaveSpeedProvider.supports_cancel
        with pytest.raises(NotImplementedError):
            WaveSpeedProvider("wavespeed", {"API_KEY": "k"}).cancel("abc")
