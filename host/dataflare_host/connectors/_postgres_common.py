"""Helpers both PostgreSQL connectors use: connecting, naming, JSON for rows."""

from __future__ import annotations

import datetime
import decimal
import json
import logging
import math
import uuid
from typing import Any

import attrs
import psycopg
from psycopg import sql

from dataflare import ConfigurationError, PluginIOError

__all__ = [
    "PostgresConnection",
    "cancel_statement",
    "conninfo",
    "jsonable",
    "key_text",
    "lsn_text",
    "open_connection",
    "parse_lsn",
    "qualified",
    "set_lock_timeout",
    "to_json",
]

log = logging.getLogger("dataflare.connectors.postgres")


def _describe_dsn(dsn: str) -> str:
    """The DSN without its password, for error messages."""
    try:
        parts = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparsable dsn>"
    parts.pop("password", None)
    return " ".join(f"{name}={value}" for name, value in parts.items())


def open_connection(dsn: str, what: str, *, autocommit: bool) -> psycopg.Connection[Any]:
    """A connection to ``dsn``; a failure is a PluginIOError naming ``what`` (no password)."""
    try:
        return psycopg.connect(dsn, autocommit=autocommit)
    except psycopg.Error as exc:
        raise PluginIOError(
            f"{what}: cannot connect to PostgreSQL ({_describe_dsn(dsn)}): {exc}".rstrip()
        ) from exc


def set_lock_timeout(conn: psycopg.Connection[Any], milliseconds: int) -> None:
    """Make every later statement on ``conn`` give up waiting for a lock after ``milliseconds``.

    A statement waiting for a lock (a migration's ``ALTER TABLE``, a ``VACUUM
    FULL``, a ``LOCK TABLE``) otherwise waits for as long as the lock is held,
    and nothing can stop the process waiting for it until then.
    """
    conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{milliseconds}ms",))


def cancel_statement(conn: psycopg.Connection[Any], what: str, timeout_s: float) -> None:
    """Ask the server to cancel the statement running on ``conn`` (callable from any thread).

    Best effort: a cancel request that cannot be delivered within ``timeout_s``
    (an unreachable server) is logged, since the caller is stopping anyway.
    """
    try:
        conn.cancel_safe(timeout=timeout_s)
    except psycopg.Error as exc:
        log.warning("%s: could not cancel the running statement: %s", what, exc)


def qualified(name: str) -> sql.Identifier:
    """``schema.table`` or ``table`` as a quoted identifier."""
    return sql.Identifier(*name.split("."))


def _json_default(value: Any) -> Any:
    # Values JSON has no type for become text: exact decimals, dates, UUIDs, bytes.
    if isinstance(value, (datetime.date, datetime.time)):  # datetime is a date
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID, datetime.timedelta)):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    return str(value)


def to_json(document: Any) -> bytes:
    """A row (or change) as compact JSON; values JSON has no type for become text."""
    return json.dumps(
        document, separators=(",", ":"), ensure_ascii=False, default=_json_default
    ).encode()


def jsonable(value: Any) -> Any:
    """``value`` as something json.dumps takes as-is (a key kept in a position)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return _json_default(value)


def key_text(value: Any) -> bytes:
    """A key column's value as a record key: its text."""
    plain = jsonable(value)
    return (plain if isinstance(plain, str) else json.dumps(plain)).encode()


def parse_lsn(text: str) -> int:
    """A log sequence number written ``16/B374D848`` as a number."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def lsn_text(value: int) -> str:
    """A log sequence number as PostgreSQL writes it (``16/B374D848``)."""
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


@attrs.frozen(kw_only=True)
class PostgresConnection:
    """Where a PostgreSQL connector connects: ``dsn``, or the design's separate keys."""

    dsn: str | None = None
    host: str | None = None
    port: int | None = None
    database: str | None = None
    user: str | None = None
    password: str | None = None


def conninfo(config: PostgresConnection, what: str) -> str:
    """The libpq connection string of a PostgreSQL connector's settings.

    Either ``dsn`` (a connection string or URL) or the design's separate keys
    ``host``, ``port``, ``database``, ``user``, ``password``; not both. Raises
    :class:`ConfigurationError` naming the setting at fault.

    >>> settings = PostgresConnection(host="localhost", port=5432, database="mydb")
    >>> conninfo(settings, "postgres source")
    'host=localhost port=5432 dbname=mydb'
    """
    parts = {
        ("dbname" if name == "database" else name): str(getattr(config, name))
        for name in ("host", "port", "database", "user", "password")
        if getattr(config, name) is not None
    }
    if config.dsn is not None and parts:
        raise ConfigurationError(
            f"{what}: give either dsn or host/port/database/user/password, not both",
            setting="dsn",
        )
    if config.dsn is not None:
        return str(config.dsn)
    if not parts:
        raise ConfigurationError(
            f"{what}: give dsn, or host with port, database, user and password as needed",
            setting="dsn",
        )
    return psycopg.conninfo.make_conninfo(**parts)
