"""Helpers both PostgreSQL connectors use: connecting, naming, JSON for rows."""

from __future__ import annotations

import datetime
import decimal
import json
import math
import uuid
from typing import Any

import psycopg
from dataflare import PluginIOError
from psycopg import sql

__all__: list[str] = []


# -- shared helpers ----------------------------------------------------------------------------


def _describe_dsn(dsn: str) -> str:
    """The DSN without its password, for error messages."""
    try:
        parts = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparsable dsn>"
    parts.pop("password", None)
    return " ".join(f"{name}={value}" for name, value in parts.items())


def _connect(dsn: str, what: str, *, autocommit: bool) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(dsn, autocommit=autocommit)
    except psycopg.Error as exc:
        raise PluginIOError(
            f"{what}: cannot connect to PostgreSQL ({_describe_dsn(dsn)}): {exc}".rstrip()
        ) from exc


def _qualified(name: str) -> sql.Identifier:
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


def _to_json(document: Any) -> bytes:
    return json.dumps(
        document, separators=(",", ":"), ensure_ascii=False, default=_json_default
    ).encode()


def _jsonable(value: Any) -> Any:
    """``value`` as something json.dumps takes as-is (a key kept in a position)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return _json_default(value)


def _key_text(value: Any) -> bytes:
    jsonable = _jsonable(value)
    return (jsonable if isinstance(jsonable, str) else json.dumps(jsonable)).encode()


def _lsn(text: str) -> int:
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def _lsn_text(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


# -- source ------------------------------------------------------------------------------------
