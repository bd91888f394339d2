"""SIGTERM stops a pipeline whose PostgreSQL read is blocked on a lock.

Another session holds ``LOCK TABLE ... IN ACCESS EXCLUSIVE MODE`` in an open
transaction, so every read of the table waits. The source reads with a lock
timeout, the pipeline cancels the running query on a stop, and stops waiting for
a reader after a grace period: ``dataflare run`` exits within seconds, cleanly.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from support.servers import PostgresServer

from dataflare_host.connectors import PostgresSource, PostgresSourceConfig

pytestmark = pytest.mark.server

ROWS = 30
STOP_LIMIT_S = 3.0


@pytest.fixture(scope="module")
def dsn(postgres_server: PostgresServer) -> str:
    """A fresh database for this module, with the table ``items`` of ROWS rows."""
    database = postgres_server.create_database("stop")
    postgres_server.execute(database, "CREATE TABLE items (id int PRIMARY KEY, name text)")
    postgres_server.execute(
        database,
        "INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, %s) AS i",
        (ROWS,),
    )
    return database


@contextlib.contextmanager
def table_lock(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """``items`` locked ACCESS EXCLUSIVE by another session until the block ends."""
    conn = psycopg.connect(dsn)  # not autocommit: the lock lasts as long as the transaction
    try:
        conn.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
        yield conn
    finally:
        conn.rollback()
        conn.close()


def wait_for_blocked_read(lock: psycopg.Connection[Any], limit_s: float = 15) -> None:
    """Until another session's statement on ``items`` waits for a lock."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        # pg_stat_activity is not transactional: a fresh snapshot on every call.
        rows = lock.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query ILIKE '%%items%%' AND pid <> pg_backend_pid()"
        ).fetchall()
        lock.execute("SELECT pg_stat_clear_snapshot()")
        if rows[0][0]:
            return
        time.sleep(0.01)
    pytest.fail("no read of the locked table ever waited for the lock")


def write_pipeline(directory: Path, dsn: str, **connection: Any) -> Path:
    source = {"dsn": dsn, "table": "items", "poll_interval_ms": 50, **connection}
    document = {
        "name": "pg-stop",
        "batch": {"size": 10, "linger_ms": 20},
        "checkpoint": {"path": "stop.checkpoint.json", "interval_ms": 50},
        "sources": [
            {"id": "items", "type": "plugin",
             "config": {"plugin_type": "postgres", "connection": source}},
        ],
        "sinks": [
            {"id": "out", "type": "plugin",
             "config": {"plugin_type": "file", "connection": {"path": "out.jsonl"}}},
        ],
    }
    file = directory / "pipeline.yaml"
    file.write_text(json.dumps(document))  # JSON is YAML
    return file


@contextlib.contextmanager
def started_run(file: Path) -> Iterator[subprocess.Popen[str]]:
    """`dataflare run` in a subprocess, killed on the way out if a test left it running."""
    process = subprocess.Popen(
        [sys.executable, "-m", "dataflare", "run", "--quiet", str(file)],
        cwd=file.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def assert_stopped_cleanly(process: subprocess.Popen[str], seconds: float, out: str) -> None:
    """Exit 0 within STOP_LIMIT_S of the SIGTERM, no traceback (``out``: stdout + stderr)."""
    assert "Traceback" not in out, out
    assert seconds < STOP_LIMIT_S, (seconds, out)
    assert process.returncode == 0, out


def terminate_and_time(process: subprocess.Popen[str]) -> tuple[float, str, str]:
    """SIGTERM, then how long until it exited (killed after 30 s), its stdout and stderr."""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        stdout, stderr = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    return time.monotonic() - started, stdout, stderr


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_sigterm_stops_a_run_whose_read_waits_for_a_lock(dsn: str, tmp_path: Path) -> None:
    """Rows read, then the table locked: SIGTERM ends the run in seconds, no traceback."""
    file = write_pipeline(tmp_path, dsn, lock_timeout_ms=60_000)
    with started_run(file) as process:
        deadline = time.monotonic() + 60
        while len(lines(tmp_path / "out.jsonl")) < ROWS:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the rows never reached the sink"
            time.sleep(0.02)
        with table_lock(dsn) as lock:
            wait_for_blocked_read(lock)
            seconds, stdout, stderr = terminate_and_time(process)
    assert_stopped_cleanly(process, seconds, stdout + stderr)
    assert "pg-stop: stopped" in stderr, stderr
    assert [row["id"] for row in lines(tmp_path / "out.jsonl")] == list(range(1, ROWS + 1))
    checkpoint = json.loads((tmp_path / "stop.checkpoint.json").read_text())
    assert checkpoint["positions"]["items"]["last"] == ROWS


def test_sigterm_stops_a_run_that_starts_on_a_locked_table(
    dsn: str, tmp_path: Path
) -> None:
    """The table locked before the run starts: it waits, and SIGTERM still ends it in seconds."""
    file = write_pipeline(tmp_path, dsn, stop_when_caught_up=True)
    with table_lock(dsn) as lock, started_run(file) as process:
        wait_for_blocked_read(lock)
        time.sleep(1.5)  # past the default lock timeout: it keeps waiting, it does not fail
        assert process.poll() is None, process.communicate()
        seconds, stdout, stderr = terminate_and_time(process)
    assert_stopped_cleanly(process, seconds, stdout + stderr)
    assert "waiting for a lock" in stderr or "locked by another session" in stderr
    assert lines(tmp_path / "out.jsonl") == []


def test_interrupt_cancels_a_read_waiting_for_a_lock(dsn: str) -> None:
    """interrupt() from another thread ends a read blocked on a lock at once, with no records."""
    source = PostgresSource(
        PostgresSourceConfig(dsn=dsn, table="items", lock_timeout_ms=60_000), {}
    )
    with source:
        source.connect({"last": ROWS, "offset": ROWS})
        with table_lock(dsn) as lock:
            outcome: list[Any] = []
            reader = threading.Thread(target=lambda: outcome.append(source.read(10, 30.0)))
            reader.start()
            wait_for_blocked_read(lock)
            started = time.monotonic()
            source.interrupt()
            reader.join(timeout=10)
            assert not reader.is_alive()
            assert time.monotonic() - started < 2
        (batch,) = outcome
        assert batch is not None
        assert list(batch.records) == []
        assert batch.position == {"last": ROWS, "offset": ROWS}


def test_a_read_gives_up_on_a_lock_after_the_lock_timeout(dsn: str) -> None:
    """With the table locked, a read returns an empty batch after lock_timeout_ms, no error."""
    source = PostgresSource(
        PostgresSourceConfig(dsn=dsn, table="items", lock_timeout_ms=200), {}
    )
    with source:
        source.connect(None)
        with table_lock(dsn):
            started = time.monotonic()
            batch = source.read(10, 0.1)
            assert time.monotonic() - started < 2
            assert batch is not None
            assert list(batch.records) == []
        batch = source.read(10, 1.0)  # unlocked again: reading resumes from the start
        assert batch is not None
        assert [r.key for r in batch.records] == [str(i).encode() for i in range(1, 11)]


def test_lock_timeout_must_be_positive() -> None:
    """lock_timeout_ms: 0 would let a read wait for a lock forever: refused."""
    from dataflare import ConfigurationError

    with pytest.raises(ConfigurationError, match="lock_timeout_ms is 0; give 1 to 3600000"):
        PostgresSourceConfig(dsn="", table="items", lock_timeout_ms=0)
