"""PostgreSQL: a source (a table or query read by key, or CDC from a slot) and an upsert sink.

Source, incremental mode: pages of ``WHERE key > last ORDER BY key LIMIT n``;
the position is the last key read, so a restart resumes right after it. The key
column must be unique and new rows must get larger keys (a serial, an identity,
a timestamp with a tie-breaking unique key is *not* enough).

Source, CDC mode: changes decoded by ``test_decoding`` from a logical replication
slot, read with ``pg_logical_slot_peek_changes`` and released with
``pg_replication_slot_advance`` only in ``ack()``, after every sink flushed them:
a crash before that re-delivers them (at least once). Transactions are delivered
in commit order; the position is the commit LSN of the last whole transaction
delivered (plus how far into a transaction larger than one batch). Records are
``{"op": "insert"|"update"|"delete"|"truncate", "table": ..., "row": {...}}``
(plus ``"old"``, the old key, when an update changed it); a delete's row holds
only the replica identity (the primary key, unless ``REPLICA IDENTITY FULL``).
Changes made before the slot was created are not delivered: CDC has no snapshot.

Sink: ``write`` buffers; ``flush`` COPYs the buffered rows into a temporary table
and upserts them with ``INSERT ... ON CONFLICT (key) DO UPDATE`` in one
transaction, so a batch written twice (a retry after a crash) leaves the table
as if written once.
"""

from __future__ import annotations

import datetime
import decimal
import json
import math
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs
import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from sdk import ConfigurationError, PluginIOError, Record

from ._base import Position, Sink, Source, SourceBatch

__all__ = ["PostgresSink", "PostgresSinkConfig", "PostgresSource", "PostgresSourceConfig"]


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


@attrs.frozen
class PostgresSourceConfig:
    """``connection:`` of the PostgreSQL source.

    ``dsn``: a libpq connection string or URL. Either ``table`` (``name`` or
    ``schema.name``) or ``query`` (any SELECT; read as a subquery). ``key_column``
    orders and resumes the read (default: the table's one-column primary key);
    ``columns`` limits the row to those columns (default: all). Rows become
    compact JSON objects (dates, decimals, UUIDs as strings); the key column's
    value, as text, is the record key.

    The source keeps polling for new rows every ``poll_interval_ms`` unless
    ``stop_when_caught_up`` is true, in which case it ends once no rows remain.

    ``cdc: true`` streams inserts, updates and deletes of ``table`` (or of every
    table when none is given) from the logical replication slot ``slot``
    (created with ``test_decoding`` when missing; needs ``wal_level=logical``).
    """

    dsn: str
    table: str | None = None
    query: str | None = None
    key_column: str | None = None
    columns: list[str] | None = None
    cdc: bool = False
    slot: str | None = None
    poll_interval_ms: int = 500
    stop_when_caught_up: bool = False

    def __attrs_post_init__(self) -> None:
        if self.cdc:
            if not self.slot:
                raise ConfigurationError("postgres source: cdc: true needs a slot name (slot:)")
            if not re.fullmatch(r"[a-z0-9_]{1,63}", self.slot):
                raise ConfigurationError(
                    f"postgres source: slot {self.slot!r} must be 1-63 lowercase letters, "
                    "digits or underscores (a replication slot name)"
                )
            if self.query is not None:
                raise ConfigurationError("postgres source: cdc reads a table, not a query")
        elif (self.table is None) == (self.query is None):
            raise ConfigurationError("postgres source: give exactly one of table or query")
        elif self.query is not None and self.key_column is None:
            raise ConfigurationError(
                "postgres source: a query needs key_column (a unique, increasing column "
                "the read is ordered and resumed by)"
            )
        if self.poll_interval_ms < 1:
            raise ConfigurationError("postgres source: poll_interval_ms must be at least 1")


class PostgresSource(Source):
    """Rows of a table or query by increasing key, or a table's changes (CDC)."""

    Config = PostgresSourceConfig
    config: PostgresSourceConfig

    def __init__(self, config: PostgresSourceConfig, params: Mapping[str, str]) -> None:
        super().__init__(config, params)
        self._conn: psycopg.Connection[Any] | None = None
        self._offset = 0
        self._last: Any = None
        self._key: str | None = config.key_column
        self._page: sql.Composed | None = None
        self._first_page: sql.Composed | None = None
        # CDC state: the commit LSN of the last whole transaction delivered, and a
        # transaction larger than a batch that is only partly delivered.
        self._done_lsn = 0
        self._partial: tuple[int, int] | None = None
        self._table_prefix: str | None = None
        self._peek_hint = 0

    @property
    def _what(self) -> str:
        config = self.config
        target = f"table {config.table}" if config.table else "query"
        return f"postgres source ({target})"

    def connect(self, position: Position | None) -> None:
        config = self.config
        # Autocommit: an idle source must not hold a transaction open (it would
        # block VACUUM, and replication slot creation waits for open transactions).
        self._conn = _connect(config.dsn, self._what, autocommit=True)
        position = position or {}
        self._offset = int(position.get("offset", 0))
        try:
            if config.cdc:
                self._connect_cdc(position)
            else:
                self._connect_incremental(position)
        except psycopg.Error as exc:
            self.close()
            raise PluginIOError(f"{self._what}: {exc}") from exc
        except BaseException:
            self.close()
            raise

    # incremental ---------------------------------------------------------------------------

    def _connect_incremental(self, position: Mapping[str, Any]) -> None:
        assert self._conn is not None
        config = self.config
        self._last = position.get("last")
        if self._key is None:
            self._key = self._primary_key(str(config.table))
        key = sql.Identifier(self._key)
        if config.table is not None:
            origin: sql.Composable = _qualified(config.table)
        else:
            # The query is the user's SQL, run as written: a % in it is not a placeholder.
            query = str(config.query).replace("%", "%%")
            origin = sql.SQL("({}) AS dataflare_query").format(sql.SQL(query))
        if config.columns:
            wanted = list(config.columns)
            if self._key not in wanted:
                wanted.append(self._key)
            selected: sql.Composable = sql.SQL(", ").join(map(sql.Identifier, wanted))
        else:
            selected = sql.SQL("*")
        base = sql.SQL("SELECT {} FROM {}").format(selected, origin)
        self._first_page = sql.SQL("{} ORDER BY {} LIMIT %s").format(base, key)
        self._page = sql.SQL("{} WHERE {} > %s ORDER BY {} LIMIT %s").format(base, key, key)
        # Fail now, not on the first read, when the table, columns or key are wrong.
        self._conn.execute(sql.SQL("{} LIMIT %s").format(base), (0,))

    def _primary_key(self, table: str) -> str:
        assert self._conn is not None
        rows = self._conn.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a "
            "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
            "WHERE i.indrelid = %s::regclass AND i.indisprimary",
            (table,),
        ).fetchall()
        if len(rows) != 1:
            raise ConfigurationError(
                f"{self._what}: set key_column (the table has "
                f"{'no primary key' if not rows else 'a primary key of several columns'})"
            )
        return str(rows[0][0])

    def read(self, max_records: int, timeout_s: float) -> SourceBatch | None:
        if self._conn is None:
            raise PluginIOError(f"{self._what} is not connected")
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                records = (
                    self._read_changes(max_records)
                    if self.config.cdc
                    else self._read_page(max_records)
                )
            except psycopg.Error as exc:
                raise PluginIOError(f"{self._what}: read failed: {exc}") from exc
            if records:
                return SourceBatch(records, self._position())
            if self.config.stop_when_caught_up:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return SourceBatch([], self._position())
            time.sleep(min(remaining, self.config.poll_interval_ms / 1000))

    def _read_page(self, max_records: int) -> list[Record]:
        assert self._conn is not None
        assert self._page is not None
        assert self._first_page is not None
        with self._conn.cursor(row_factory=dict_row) as cursor:
            if self._last is None:
                cursor.execute(self._first_page, (max_records,))
            else:
                cursor.execute(self._page, (self._last, max_records))
            rows = cursor.fetchall()
        key = self._key
        assert key is not None
        columns = self.config.columns
        records = []
        for row in rows:
            value = row[key]
            if value is None:
                raise PluginIOError(f"{self._what}: key column {key!r} is NULL in a row")
            document = {name: row[name] for name in columns} if columns else row
            records.append(Record(_to_json(document), _key_text(value), None, None, self._offset))
            self._offset += 1
            self._last = _jsonable(value)
        return records

    # CDC -----------------------------------------------------------------------------------

    def _connect_cdc(self, position: Mapping[str, Any]) -> None:
        assert self._conn is not None
        config = self.config
        self._done_lsn = _lsn(position["lsn"]) if position.get("lsn") else 0
        partial = position.get("partial")
        self._partial = (_lsn(partial[0]), int(partial[1])) if partial else None
        if config.table is not None:
            row = self._conn.execute(
                "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) "
                "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.oid = %s::regclass",
                (config.table,),
            ).fetchone()
            assert row is not None
            self._table_prefix = f"table {row[0]}: "
            if self._key is None:
                try:
                    self._key = self._primary_key(config.table)
                except ConfigurationError:
                    self._key = None  # changes then have no record key
        slot = self._conn.execute(
            "SELECT plugin, database = current_database() FROM pg_replication_slots "
            "WHERE slot_name = %s",
            (config.slot,),
        ).fetchone()
        if slot is None:
            self._conn.execute(
                "SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (config.slot,)
            )
        elif slot[0] != "test_decoding" or not slot[1]:
            raise ConfigurationError(
                f"{self._what}: replication slot {config.slot!r} exists but is not a "
                "test_decoding slot of this database"
            )

    def _peek(self, limit: int) -> list[tuple[str, str]]:
        assert self._conn is not None
        rows = self._conn.execute(
            "SELECT lsn::text, data FROM pg_logical_slot_peek_changes(%s, NULL, %s, "
            "'skip-empty-xacts', '1')",
            (self.config.slot, limit),
        ).fetchall()
        return [(str(lsn), str(data)) for lsn, data in rows]

    def _read_changes(self, max_records: int) -> list[Record]:
        # Peeking starts at the slot's acknowledged position every time: fetch
        # enough to get past what was delivered but not acknowledged yet, and more
        # when that was not enough.
        limit = self._peek_hint + max_records + 2
        while True:
            rows = self._peek(limit)
            changes, skipped, done_lsn, partial = self._select_changes(rows, max_records)
            if len(changes) >= max_records or len(rows) < limit:
                break
            limit *= 2
        self._peek_hint = skipped + len(changes)
        self._done_lsn, self._partial = done_lsn, partial
        return [self._change_record(lsn, text) for lsn, text in changes]

    def _select_changes(
        self, rows: list[tuple[str, str]], max_records: int
    ) -> tuple[list[tuple[str, str]], int, int, tuple[int, int] | None]:
        """The next changes to deliver, in whole transactions where they fit.

        Returns them, how many peeked rows came before them, and the position
        after them (the last whole transaction's commit LSN, and the partly
        delivered transaction if any). Changes the source's state not at all.
        """
        selected: list[tuple[str, str]] = []
        skipped = 0
        done_lsn, partial = self._done_lsn, self._partial
        transaction: list[tuple[str, str]] = []
        for lsn, data in rows:
            if data.startswith("BEGIN"):
                transaction = []
                continue
            if not data.startswith("COMMIT"):
                transaction.append((lsn, data))
                continue
            commit = _lsn(lsn)
            if commit <= done_lsn:
                skipped += len(transaction) + 2
                continue
            start = partial[1] if partial and partial[0] == commit else 0
            if self._table_prefix is not None:
                transaction = [
                    (change_lsn, text)
                    for change_lsn, text in transaction
                    if text.startswith(self._table_prefix)
                ]
            taken = transaction[start : start + max_records - len(selected)]
            selected.extend(taken)
            if start + len(taken) < len(transaction):
                partial = (commit, start + len(taken))
                break
            done_lsn, partial = commit, None
            if len(selected) >= max_records:
                break
        return selected, skipped, done_lsn, partial

    def _change_record(self, lsn: str, text: str) -> Record:
        table, operation, row, old = _parse_change(text)
        document: dict[str, Any] = {"op": operation, "table": table, "row": row}
        if old is not None:
            document["old"] = old
        key = None
        if self._key is not None:
            key_value = row.get(self._key, (old or {}).get(self._key))
            key = None if key_value is None else _key_text(key_value)
        record = Record(_to_json(document), key, None, {"lsn": lsn, "op": operation}, self._offset)
        self._offset += 1
        return record

    def _position(self) -> Position:
        if not self.config.cdc:
            return {"last": self._last, "offset": self._offset}
        partial = [_lsn_text(self._partial[0]), self._partial[1]] if self._partial else None
        return {"lsn": _lsn_text(self._done_lsn), "partial": partial, "offset": self._offset}

    def ack(self, position: Position) -> None:
        """CDC: let the slot release the changes of transactions up to ``position``."""
        if not self.config.cdc or not position or not position.get("lsn"):
            return
        if self._conn is None:
            raise PluginIOError(f"{self._what} is not connected")
        if _lsn(position["lsn"]) == 0:
            return
        try:
            self._conn.execute(
                "SELECT pg_replication_slot_advance(%s, %s::pg_lsn)",
                (self.config.slot, position["lsn"]),
            )
        except psycopg.Error as exc:
            raise PluginIOError(
                f"{self._what}: cannot advance slot {self.config.slot!r}: {exc}"
            ) from exc

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# test_decoding prints a change as
#   table public.items: UPDATE: old-key: id[integer]:1 new-tuple: id[integer]:2 name[text]:'x'
_CHANGE = re.compile(
    r"table (?P<table>.+?): (?P<op>INSERT|UPDATE|DELETE|TRUNCATE):(?P<rest>.*)$", re.DOTALL
)
_COLUMN = re.compile(
    r"""\s*(?P<name>"(?:[^"]|"")*"|[^\s\[]+)\[(?P<type>.*?)\]:(?P<value>'(?:[^']|'')*'|\S+)""",
    re.DOTALL,
)
_INT_TYPES = {"smallint", "integer", "bigint", "oid"}
_FLOAT_TYPES = {"real", "double precision"}


def _parse_columns(text: str) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for match in _COLUMN.finditer(text):
        name = match["name"]
        if name.startswith('"'):
            name = name[1:-1].replace('""', '"')
        kind, raw = match["type"], match["value"]
        value: Any
        if raw == "null":
            value = None
        elif raw.startswith("'"):
            value = raw[1:-1].replace("''", "'")
        elif kind in _INT_TYPES:
            value = int(raw)
        elif kind in _FLOAT_TYPES:
            number = float(raw)
            value = number if math.isfinite(number) else raw
        elif kind == "boolean":
            value = raw == "true"
        else:  # numeric (kept exact, as text), bit strings, unchanged-toast-datum
            value = raw
        row[name] = value
    return row


def _parse_change(text: str) -> tuple[str, str, dict[str, Any], dict[str, Any] | None]:
    match = _CHANGE.match(text)
    if match is None:
        raise PluginIOError(f"postgres source: cannot parse a decoded change: {text[:200]!r}")
    rest = match["rest"]
    old = None
    if "old-key:" in rest and " new-tuple:" in rest:
        old_text, _, rest = rest.partition(" new-tuple:")
        old = _parse_columns(old_text.replace("old-key:", "", 1))
    return match["table"], match["op"].lower(), _parse_columns(rest), old


# -- sink --------------------------------------------------------------------------------------


@attrs.frozen
class PostgresSinkConfig:
    """``connection:`` of the PostgreSQL sink.

    Upserts into ``table`` on ``key_columns`` (they need a unique index or
    primary key). ``mode: columns`` (the default) takes each record's value as a
    JSON object and writes its fields to the table's columns of the same names
    (``columns`` limits which; default: every field that is a column; a missing
    field is written as NULL). ``mode: json`` writes the record key (text) to the
    one key column and the whole value to ``value_column`` (json or jsonb).
    ``create_table: true`` creates a missing table: in json mode as
    ``(key text primary key, value jsonb)``, in columns mode with column types
    guessed from the first batch.
    """

    dsn: str
    table: str
    key_columns: list[str]
    columns: list[str] | None = None
    mode: Literal["columns", "json"] = "columns"
    value_column: str = "value"
    create_table: bool = False

    def __attrs_post_init__(self) -> None:
        if not self.key_columns:
            raise ConfigurationError("postgres sink: key_columns must name at least one column")
        if self.mode == "json" and len(self.key_columns) != 1:
            raise ConfigurationError(
                "postgres sink: mode json needs exactly one key column (it gets the record key)"
            )
        if self.columns is not None and not set(self.key_columns) <= set(self.columns):
            raise ConfigurationError("postgres sink: columns must include every key column")


_COPY_LINE = re.compile(r"COPY \S+, line (\d+)")


def _copy_text(value: Any) -> str | None:
    """A JSON value as the text PostgreSQL parses into the column's type."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _guess_type(values: list[Any]) -> str:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return "boolean"
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return "bigint"
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return "double precision"
    if all(isinstance(v, str) for v in present):
        return "text"
    return "jsonb"


class PostgresSink(Sink):
    """Upserts records into a table: COPY into a staging table, then one INSERT ... ON CONFLICT."""

    Config = PostgresSinkConfig
    config: PostgresSinkConfig

    def __init__(self, config: PostgresSinkConfig, params: Mapping[str, str]) -> None:
        super().__init__(config, params)
        self._conn: psycopg.Connection[Any] | None = None
        self._table_columns: list[str] | None = None
        self._json_columns: set[str] = set()
        self._buffer: list[tuple[int, dict[str, Any]]] = []
        self._what = f"postgres sink (table {config.table})"

    def connect(self) -> None:
        self._conn = _connect(self.config.dsn, self._what, autocommit=False)
        try:
            self._inspect()
        except psycopg.Error as exc:
            self._drop_connection()
            raise PluginIOError(f"{self._what}: {exc}") from exc
        except BaseException:
            self._drop_connection()
            raise

    def _drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _inspect(self) -> None:
        """Learn the table's columns and check the upsert key (if the table exists)."""
        assert self._conn is not None
        config = self.config
        with self._conn.transaction():
            exists = self._conn.execute("SELECT to_regclass(%s)", (config.table,)).fetchone()
            if exists is None or exists[0] is None:
                if not config.create_table:
                    raise ConfigurationError(
                        f"{self._what}: the table does not exist; create it or set "
                        "create_table: true"
                    )
                if config.mode == "json":
                    self._create_table(
                        {config.key_columns[0]: "text", config.value_column: "jsonb"}
                    )
                else:
                    return  # created at the first flush, from the first rows' types
            described = self._conn.execute(
                "SELECT attname, atttypid::regtype::text FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
                "ORDER BY attnum",
                (config.table,),
            ).fetchall()
            self._table_columns = [str(name) for name, _ in described]
            self._json_columns = {
                str(name) for name, kind in described if kind in ("json", "jsonb")
            }
            wanted = (config.columns or []) + config.key_columns
            if config.mode == "json":
                wanted.append(config.value_column)
            missing = [name for name in wanted if name not in self._table_columns]
            if missing:
                raise ConfigurationError(
                    f"{self._what}: no column {', '.join(map(repr, missing))} in the table "
                    f"(it has {', '.join(self._table_columns)})"
                )
            unique = self._conn.execute(
                "SELECT 1 FROM pg_index i WHERE i.indrelid = %s::regclass AND i.indisunique "
                "AND i.indpred IS NULL AND (SELECT array_agg(a.attname::text ORDER BY a.attname) "
                "FROM pg_attribute a WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey))"
                " = %s",
                (config.table, sorted(config.key_columns)),
            ).fetchone()
            if unique is None:
                raise ConfigurationError(
                    f"{self._what}: key_columns {config.key_columns} need a primary key or "
                    "unique index on exactly those columns (the upsert's conflict target)"
                )

    def _create_table(self, types: Mapping[str, str]) -> None:
        assert self._conn is not None
        definition = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind))
            for name, kind in types.items()
        )
        self._conn.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))").format(
                _qualified(self.config.table),
                definition,
                sql.SQL(", ").join(map(sql.Identifier, self.config.key_columns)),
            )
        )

    def write(self, records: Sequence[Record]) -> None:
        if self._conn is None:
            raise PluginIOError(f"{self._what} is not connected")
        config = self.config
        rows: list[tuple[int, dict[str, Any]]] = []
        for record in records:
            if config.mode == "json":
                rows.append((record.offset, self._json_row(record)))
                continue
            try:
                document = json.loads(record.value)
            except ValueError:
                document = None
            if not isinstance(document, dict):
                raise PluginIOError(
                    f"{self._what}: record at offset {record.offset} is not a JSON object, "
                    f"so it cannot become a row (value starts {record.value[:60]!r})"
                )
            absent = [name for name in config.key_columns if document.get(name) is None]
            if absent:
                raise PluginIOError(
                    f"{self._what}: record at offset {record.offset} has no value for key "
                    f"column {absent[0]!r}"
                )
            rows.append((record.offset, document))
        self._buffer.extend(rows)

    def _json_row(self, record: Record) -> dict[str, Any]:
        config = self.config
        if record.key is None:
            raise PluginIOError(
                f"{self._what}: record at offset {record.offset} has no key (mode json writes "
                f"the key to {config.key_columns[0]!r})"
            )
        try:
            key, text = record.key.decode(), record.value.decode()
            json.loads(text)
        except ValueError as exc:
            raise PluginIOError(
                f"{self._what}: record at offset {record.offset} is not UTF-8 JSON: {exc}"
            ) from exc
        return {config.key_columns[0]: key, config.value_column: text}

    def flush(self) -> None:
        if not self._buffer:
            return
        if self._conn is None or self._conn.closed:
            self.connect()
        assert self._conn is not None
        # The last record of a key wins; one INSERT cannot touch a row twice.
        latest: dict[str, tuple[int, dict[str, Any]]] = {}
        for offset, row in self._buffer:
            key = json.dumps([row[name] for name in self.config.key_columns], sort_keys=True)
            latest[key] = (offset, row)
        staged = list(latest.values())
        try:
            with self._conn.transaction():
                columns = self._batch_columns(staged)
                self._upsert(columns, staged)
        except psycopg.Error as exc:
            raise self._flush_error(exc, staged) from exc
        self._buffer.clear()

    def _batch_columns(self, staged: list[tuple[int, dict[str, Any]]]) -> list[str]:
        config = self.config
        if self._table_columns is None:  # create_table in columns mode: guess from the rows
            names: dict[str, list[Any]] = {name: [] for name in config.columns or []}
            for _, row in staged:
                for name, value in row.items():
                    if config.columns is None or name in config.columns:
                        names.setdefault(name, []).append(value)
            types = {name: _guess_type(values) for name, values in names.items()}
            self._create_table(types)
            self._table_columns = list(types)
            self._json_columns = {name for name, kind in types.items() if kind == "jsonb"}
        if config.mode == "json":
            return [config.key_columns[0], config.value_column]
        if config.columns is not None:
            return list(config.columns)
        present: set[str] = set()
        for _, row in staged:
            present.update(row)
        return [name for name in self._table_columns if name in present]

    def _upsert(self, columns: list[str], staged: list[tuple[int, dict[str, Any]]]) -> None:
        assert self._conn is not None
        config = self.config
        target = _qualified(config.table)
        column_list = sql.SQL(", ").join(map(sql.Identifier, columns))
        stage = sql.Identifier("dataflare_stage")
        self._conn.execute(
            sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
                stage, column_list, target
            )
        )
        # JSON columns take every value as JSON text (a string too); the others take
        # the value's text, which PostgreSQL parses as the column's type. In json
        # mode the value column already holds the record's JSON text.
        as_json = [name in self._json_columns and self.config.mode == "columns" for name in columns]
        with self._conn.cursor().copy(
            sql.SQL("COPY {} ({}) FROM STDIN").format(stage, column_list)
        ) as copy:
            for _, row in staged:
                copy.write_row(
                    [
                        _json_text(row.get(name)) if json_column else _copy_text(row.get(name))
                        for name, json_column in zip(columns, as_json, strict=True)
                    ]
                )
        updates = [name for name in columns if name not in config.key_columns]
        action: sql.Composable
        if updates:
            action = sql.SQL("DO UPDATE SET {}").format(
                sql.SQL(", ").join(
                    sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(n), sql.Identifier(n))
                    for n in updates
                )
            )
        else:
            action = sql.SQL("DO NOTHING")
        self._conn.execute(
            sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ({}) {}").format(
                target,
                column_list,
                column_list,
                stage,
                sql.SQL(", ").join(map(sql.Identifier, config.key_columns)),
                action,
            )
        )

    def _flush_error(
        self, exc: psycopg.Error, staged: list[tuple[int, dict[str, Any]]]
    ) -> PluginIOError:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = ""
        context = exc.diag.context or ""
        line = _COPY_LINE.search(context)
        if line and 0 < int(line[1]) <= len(staged):
            where = f" at record offset {staged[int(line[1]) - 1][0]}"
        elif context:
            where = f" ({context.strip().splitlines()[0]})"
        return PluginIOError(f"{self._what}: flush failed{where}: {message}")

    def close(self) -> None:
        if self._conn is not None:
            try:
                if not self._conn.closed and not self._conn.broken:
                    self.flush()
            finally:
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
