from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from django.core.cache import cache

from tests.mock_http import Expected, MockHTTP


@pytest.fixture(autouse=True)
def _clear_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def mock_http() -> Iterator[Callable[..., MockHTTP]]:
    """``mock_http((method, url, response), ...)``; every expected request must be made."""
    made: list[MockHTTP] = []

    def make(*expected: Expected) -> MockHTTP:
        http = MockHTTP(*expected)
        made.append(http)
        return http

    yield make
    for http in made:
        http.client.close()
        http.assert_done()
