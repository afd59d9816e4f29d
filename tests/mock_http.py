"""A fake HTTP server for provider tests that answers only what it was told to expect.

Give it the requests a test expects, in order, as ``(method, url, answer)``; ``answer`` is
an :class:`httpx.Response`, an exception to raise (``httpx.ConnectError(...)``) or a
function of the request returning a response. Any
other request fails the test with an ``AssertionError`` instead of reaching the network,
and :meth:`MockHTTP.assert_done` fails when an expected request was never made.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

FIXTURES = Path(__file__).resolve().parent / "fixtures"

Answer = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]
Expected = tuple[str, str, Answer]


def fixture(name: str) -> Any:
    """A JSON payload from ``tests/fixtures/`` (``"wave/submit_queued.json"``)."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def json_response(status: int, data: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=data, headers=headers)


class MockHTTP:
    def __init__(self, *expected: Expected) -> None:
        self.expected = list(expected)
        self.requests: list[httpx.Request] = []
        self.failures: list[str] = []
        self.transport = httpx.MockTransport(self.handle)
        self.client = httpx.Client(transport=self.transport)

    def expect(self, method: str, url: str, answer: Answer) -> MockHTTP:
        self.expected.append((method, url, answer))
        return self

    def handle(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        index = len(self.requests) - 1
        if index >= len(self.expected):
            self._fail(f"unexpected request #{index + 1}: {request.method} {request.url}")
        method, url, answer = self.expected[index]
        if request.method != method or not same_url(request.url, httpx.URL(url)):
            self._fail(
                f"request #{index + 1}: expected {method} {url}, got {request.method} {request.url}"
            )
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(request)
        return answer

    def _fail(self, message: str) -> None:
        # Kept as well as raised, so code that swallows the error still fails the test.
        self.failures.append(message)
        raise AssertionError(message)

    def assert_done(self) -> None:
        assert not self.failures, self.failures
        missing = self.expected[len(self.requests) :]
        assert not missing, "expected requests never made: " + ", ".join(
            f"{method} {url}" for method, url, _ in missing
        )

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def last_json(self) -> Any:
        return json.loads(self.last.content)


def same_url(actual: httpx.URL, expected: httpx.URL) -> bool:
    """Equal scheme, host, port and path, and the same query parameters (decoded)."""
    return actual.copy_with(query=None) == expected.copy_with(query=None) and sorted(
        actual.params.multi_items()
    ) == sorted(expected.params.multi_items())
