"""Real PostgreSQL and Redis servers for the connector tests, one of each per session.

Each server runs from the Debian packages that ``bash scripts/setup`` installs, in
a temporary directory, on a free port, and is stopped at the end of the session.
Without the packages the tests that need a server are skipped, except under CI
(the ``CI`` environment variable set), where a missing server is a failure.

Tests use the fixtures through ``tests/conftest.py``, which imports them.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_BIN = Path("/usr/lib/postgresql/15/bin")
REDIS_SERVER = "redis-server"


def _missing(what: str) -> None:
    message = f"{what} is not installed; run `bash scripts/setup` (as root) to install it"
    if os.environ.get("CI"):
        pytest.fail(f"CI: {message}")
    pytest.skip(message)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _as_postgres(args: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root: drop to the postgres user when we are root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


def _run(args: list[str], what: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stdout}{done.stderr}")


class PostgresServer:
    """A running PostgreSQL 15 (wal_level=logical, fsync off); ``dsn`` is its postgres DB."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self.dsn = self.dsn_for("postgres")

    def dsn_for(self, database: str) -> str:
        """The connection string of ``database`` on this server."""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"

    def create_database(self, prefix: str = "test") -> str:
        """A fresh, empty database; returns its DSN."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn_for(name)

    def execute(self, dsn: str, statement: str, params: object = None) -> list[tuple[object, ...]]:
        """Run one statement in its own committed transaction; the rows it returned."""
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            cursor = conn.execute(statement, params)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session (skipped if the binaries are missing)."""
    if not (PG_BIN / "initdb").exists():
        _missing(f"PostgreSQL 15 ({PG_BIN}/initdb)")
    # Not under pytest's tmp dir: that is private to our user, and the server runs
    # as postgres.
    directory = Path(tempfile.mkdtemp(prefix="dataflare-pg-"))
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(directory, account.pw_uid, account.pw_gid)
    directory.chmod(0o700)
    data = directory / "data"
    port = free_port()
    pg_ctl = str(PG_BIN / "pg_ctl")
    try:
        _run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust",
                           "-U", "postgres", "--no-sync", "-E", "UTF8"]), "initdb")
        options = (f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 "
                   "-c wal_level=logical -c fsync=off -c full_page_writes=off "
                   "-c max_replication_slots=20 -c max_wal_senders=20")
        _run(_as_postgres([pg_ctl, "-D", str(data), "-l", str(directory / "pg.log"), "-w",
                           "-t", "30", "-o", options, "start"]), "pg_ctl start")
        yield PostgresServer(directory, port)
    finally:
        if (data / "postmaster.pid").exists():
            _run(_as_postgres([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]),
                 "pg_ctl stop")
        shutil.rmtree(directory, ignore_errors=True)


class RedisServer:
    """A running Redis with an append-only file; ``url`` is its database 0."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A Redis server for the whole session (skipped if redis-server is missing)."""
    exe = shutil.which(REDIS_SERVER)
    if exe is None:
        _missing("redis-server")
    assert exe is not None
    directory = Path(tempfile.mkdtemp(prefix="dataflare-redis-"))
    port = free_port()
    pidfile = directory / "redis.pid"
    _run([exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
          "--save", "", "--appendonly", "yes", "--daemonize", "yes",
          "--pidfile", str(pidfile), "--logfile", str(directory / "redis.log")],
         "redis-server")
    try:
        import redis

        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        client.close()
        yield RedisServer(directory, port)
    finally:
        _stop_redis(port, pidfile)
        shutil.rmtree(directory, ignore_errors=True)


def _stop_redis(port: int, pidfile: Path) -> None:
    # A raw SHUTDOWN: redis-py would retry (with backoff) on the closed connection.
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 2) as sock:
        sock.sendall(b"SHUTDOWN NOSAVE\r\n")
        sock.recv(64)
    deadline = time.monotonic() + 5
    while pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    if pidfile.exists():  # still running: stop it by its own PID
        pid = int(pidfile.read_text().strip())
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
