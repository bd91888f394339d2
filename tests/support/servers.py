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

from support.paths import REPO

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


# -- OpenSearch ----------------------------------------------------------------------------------

OPENSEARCH_SOURCE = REPO / "tests" / "opensearch"
OPENSEARCH_BUILD = Path(
    os.environ.get("DATAFLARE_OPENSEARCH_DIR") or REPO / ".dataflare" / "opensearch"
)
OPENSEARCH_START_S = 120


class OpenSearchServer:
    """A running single-node OpenSearch 2.19 (the real server, from Maven Central jars)."""

    def __init__(self, directory: Path, port: int, process: subprocess.Popen[bytes]) -> None:
        self.directory = directory
        self.port = port
        self.process = process
        self.url = f"http://127.0.0.1:{port}"

    def request(self, method: str, path: str, body: object = None) -> object:
        """One JSON request; the decoded answer (raises on an HTTP error status)."""
        import httpx

        response = httpx.request(method, self.url + path, json=body, timeout=60)
        response.raise_for_status()
        return response.json()

    def documents(self, index: str) -> dict[str, object]:
        """Every document of ``index`` (refreshed first), by id."""
        self.request("POST", f"/{index}/_refresh")
        answer = self.request("GET", f"/{index}/_search?size=10000&sort=_doc")
        assert isinstance(answer, dict)
        return {hit["_id"]: hit["_source"] for hit in answer["hits"]["hits"]}

    def count(self, index: str) -> int:
        """How many documents ``index`` holds (refreshed first)."""
        self.request("POST", f"/{index}/_refresh")
        answer = self.request("GET", f"/{index}/_count")
        assert isinstance(answer, dict)
        return int(answer["count"])


def _build_opensearch() -> None:
    """Build the launcher (a no-op once built; scripts/setup does it ahead of the tests)."""
    if shutil.which("java") is None or shutil.which("mvn") is None:
        _missing("Java 17 and Maven (for the OpenSearch test node)")
    done = subprocess.run(["bash", str(OPENSEARCH_SOURCE / "build")], capture_output=True,
                          text=True, check=False, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"building the OpenSearch launcher failed: {done.stdout}{done.stderr}")


@pytest.fixture(scope="session")
def opensearch_server() -> Iterator[OpenSearchServer]:
    """A real OpenSearch node for the whole session on a free 127.0.0.1 port, stopped at the end.

    The JVM runs with a 512 MB heap and its data in a temporary directory.
    """
    _build_opensearch()
    import httpx

    directory = Path(tempfile.mkdtemp(prefix="dataflare-opensearch-"))
    port, transport = free_port(), free_port()
    log = (directory / "node.log").open("wb")
    classpath = f"{OPENSEARCH_BUILD / 'target' / 'classes'}:{OPENSEARCH_BUILD / 'lib'}/*"
    process = subprocess.Popen(
        ["java", "-Xms512m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
         f"-Dos.http.port={port}", f"-Dos.transport.port={transport}",
         f"-Dos.home={directory / 'home'}", "-cp", classpath, "dataflare.opensearch.OsNode"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + OPENSEARCH_START_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"OpenSearch exited with {process.returncode} while starting: "
                    f"{(directory / 'node.log').read_text(errors='replace')[-3000:]}"
                )
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"OpenSearch did not answer within {OPENSEARCH_START_S} s")
            time.sleep(0.2)
        yield OpenSearchServer(directory, port, process)
    finally:
        # The launcher closes the node on SIGTERM (a shutdown hook); then force it.
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()
        shutil.rmtree(directory, ignore_errors=True)
