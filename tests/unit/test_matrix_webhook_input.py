"""The webhook endpoint under generated input (docs/reliability.md W6, W7).

W6: whatever the three signature headers hold, the answer is 400 or 401, never a 500, and
nothing is recorded. W7: a body signed with the right secret is still refused with a 400
when it is not UTF-8, not JSON, or JSON of the wrong shape, and the refusal is logged.
"""

from __future__ import annotations

import json
import logging
import types
from typing import Any

import pytest
from django.test import Client
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from unit_helpers import WS_SECRET

from imagen_assets.models import WebhookEvent
from imagen_assets.providers import wavespeed
from tests.factories import signed_wavespeed_headers

pytestmark = pytest.mark.django_db

NOW = 1_790_000_000
URL = "/imagen/webhooks/wavespeed/"
BODY = json.dumps({"id": "p-1", "status": "processing", "outputs": []}).encode()


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wavespeed, "time", types.SimpleNamespace(time=lambda: NOW))


def post(body: bytes, headers: dict[str, str]) -> Any:
    client = Client(enforce_csrf_checks=True)
    return client.generic("POST", URL, body, content_type="application/json", headers=headers)


# -- W6 --------------------------------------------------------------------------------------

entry = st.tuples(
    st.sampled_from(["v1", "v3", "v1a", "v2", "", "V3", "v3 "]),
    st.sampled_from([",", "", ",,", "=", ", "]),
    st.one_of(st.text(max_size=80), st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)),
).map("".join)
signature_header = st.one_of(
    st.text(),
    st.lists(entry, max_size=30).map(" ".join),
)
timestamp_header = st.one_of(st.text(), st.just(str(NOW)), st.integers().map(str))
webhook_id_header = st.one_of(st.text(), st.just("evt-1"))


class MalformedHeaderTests:
    @settings(
        max_examples=200,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(webhook_id=webhook_id_header, timestamp=timestamp_header, signature=signature_header)
    @example(webhook_id="evt-1", timestamp=str(NOW), signature="v1")
    @example(webhook_id="evt-1", timestamp=str(NOW), signature="v1,!!!")
    @example(webhook_id="evt-1", timestamp=str(NOW), signature="v1,a,b")
    @example(webhook_id="evt-1", timestamp=str(NOW), signature="v3,é" + "0" * 63)
    @example(webhook_id="évt", timestamp=str(NOW), signature="v3," + "0" * 64)
    @example(webhook_id="evt-1", timestamp=str(NOW), signature="v3," + "a" * 10_240)
    @example(webhook_id="evt-1", timestamp=str(NOW), signature=" ".join(["v3,00"] * 1000))
    @example(webhook_id="evt-1", timestamp="1e9", signature="v3," + "0" * 64)
    @example(webhook_id="evt-1", timestamp="٣٣٣", signature="v3," + "0" * 64)
    @example(webhook_id="\x00", timestamp=str(NOW), signature="v3,\x00")
    def test_any_header_value_is_a_400_or_401_never_a_500(
        self, webhook_id: str, timestamp: str, signature: str
    ) -> None:
        """W6. Hypothesis ``text()`` (and v3-looking entry lists) for each header, with a
        valid timestamp often enough to reach the signature parser."""
        headers = {
            "webhook-id": webhook_id,
            "webhook-timestamp": timestamp,
            "webhook-signature": signature,
        }
        response = post(BODY, headers)

        assert response.status_code in (400, 401), (response.status_code, headers)
        assert "error" in response.json()
        assert not WebhookEvent.objects.exists()


# -- W7 --------------------------------------------------------------------------------------


class SignedGarbageTests:
    @pytest.mark.parametrize(
        "body",
        [
            b"\xff\xfe\x00not utf-8",
            b"\x89PNG\r\n\x1a\n",
            b"not json at all",
            b"",
            b"{",
            b"[1, 2, 3]",
            b'"a string"',
            b"null",
            b"42",
            b'{"id": "p-1"}',
            b'{"status": "completed"}',
            b'{"id": 7, "status": "completed", "outputs": []}',
            b'{"id": "p-1", "status": "completed", "outputs": "not a list"}',
            b'{"id": "p-1", "status": ["completed"], "outputs": []}',
            b'{"id": "p-1", "status": "completed", "outputs": [{"url": 1}]}',
        ],
    )
    def test_a_validly_signed_body_of_the_wrong_kind_is_a_400_and_logged(
        self, body: bytes, caplog: pytest.LogCaptureFixture
    ) -> None:
        """W7. Signed garbage is still garbage: 400, nothing stored, a warning logged."""
        caplog.set_level(logging.WARNING, logger="imagen_assets")
        headers = signed_wavespeed_headers(WS_SECRET, "evt-garbage-7", body, timestamp=NOW)

        response = post(body, headers)

        assert response.status_code == 400, response.content
        assert not WebhookEvent.objects.exists()
        refusals = [r for r in caplog.records if "Refused a wavespeed webhook" in r.getMessage()]
        assert len(refusals) == 1
        assert "'evt-garbage-7'" in refusals[0].getMessage()
        assert WS_SECRET.removeprefix("whsec_") not in caplog.text
