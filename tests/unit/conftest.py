"""Hermetic unit tests: no Redis, no DNS, no network, no shared database file.

Every test gets the IMAGEN_ASSETS of :func:`unit_helpers.imagen_settings` and a private
MEDIA_ROOT; the real queue, the real resolver and any real HTTP connection are replaced by
tripwires that fail the test if anything reaches them.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.core.cache import cache
from unit_helpers import CDN_ADDRESS, CDN_HOST, FakeCDN, MockHTTP, imagen_settings

from imagen_assets import downloads, ingest, jobs, providers, queueing

UNIT_DIR = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def django_db_modify_db_settings(
    request: pytest.FixtureRequest, django_db_modify_db_settings_parallel_suffix: None
) -> None:
    """Run on an in-memory SQLite database when only unit tests are collected.

    The test settings' database is a file shared with the integration tests' worker
    processes; unit tests neither need it nor should race other runs over it.
    """
    from django.conf import settings

    only_unit = all(UNIT_DIR in Path(item.path).parents for item in request.session.items)
    database = settings.DATABASES["default"]
    if only_unit and database["ENGINE"] == "django.db.backends.sqlite3":
        database.setdefault("TEST", {})["NAME"] = ":memory:"


def _tripwire(what: str) -> Callable[..., Any]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"unit tests must not {what}")

    return refuse


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch, settings: Any, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", _tripwire("open connections"))
    monkeypatch.setattr(
        downloads,
        "socket",
        types.SimpleNamespace(getaddrinfo=_tripwire("resolve names"), SOCK_STREAM=1),
    )
    monkeypatch.setattr(queueing, "get_queue", _tripwire("talk to Redis"))
    # What check W020 reads from Redis: as when Redis cannot be reached, nothing.
    monkeypatch.setattr(queueing, "eviction_policy", lambda: None)
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.IMAGEN_ASSETS = imagen_settings()
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits between download attempts (ingest.sleep), recorded instead of slept."""
    waits: list[float] = []
    monkeypatch.setattr(ingest, "sleep", waits.append)
    return waits


# -- providers and downloads for the jobs ----------------------------------------------------


@pytest.fixture
def use_http(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., MockHTTP]]:
    """``use_http(("POST", url, response), ...)``: the jobs' providers talk to this fake."""
    made: list[MockHTTP] = []

    def install(*expected: Any) -> MockHTTP:
        http = MockHTTP(*expected)
        made.append(http)
        monkeypatch.setattr(
            jobs,
            "get_provider",
            lambda alias=None, **kwargs: providers.get_provider(alias, client=http.client),
        )
        return http

    yield install
    for http in made:
        http.client.close()
        http.assert_done()


@pytest.fixture
def cdn(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCDN]:
    """The CDN the providers' output URLs point at; jobs download through it."""
    fake = FakeCDN()
    real_download = downloads.download

    def download(url: str, **kwargs: Any) -> downloads.Downloaded:
        return real_download(
            url,
            **kwargs,
            transport=fake.transport,
            resolver=lambda host, port: [CDN_ADDRESS] if host == CDN_HOST else [],
        )

    monkeypatch.setattr(ingest, "download", download)
    yield fake
    assert not fake.failures, fake.failures


@pytest.fixture
def migrate(transactional_db: None) -> Iterator[Any]:
    """``migrate(target)`` -> the historical apps at ``target`` (a migration test's
    before and after); the database goes back to the latest migration afterwards."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    def run(target: list[tuple[str, str]]) -> Any:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(target)
        return executor.loader.project_state(target).apps

    yield run
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
