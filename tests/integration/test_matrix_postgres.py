"""The locking tests run on PostgreSQL, or the run fails (docs/reliability.md S6).

``select_for_update()`` does nothing on SQLite, so a concurrency test that ran there would
pass without proving anything. This test runs in the PostgreSQL pass (``-m "integration or
postgres"`` under ``python -m campaigns.stack postgres``); run there on any other database,
it fails instead of skipping.
"""

from __future__ import annotations

import pytest
from django.db import connection

from tests.integration import test_concurrency

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def test_the_concurrency_suite_runs_on_postgresql(transactional_db: None) -> None:
    assert connection.vendor == "postgresql", (
        f"the locking tests ran on {connection.vendor}: run them through "
        "`python -m campaigns.stack postgres -- ...` (make test-postgres)"
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_locks LIMIT 1")


def test_every_concurrency_test_is_in_the_postgresql_pass() -> None:
    """A test added to the concurrency module without the marker would run on SQLite."""
    marks = {mark.name for mark in test_concurrency.pytestmark}
    assert "postgres" in marks
