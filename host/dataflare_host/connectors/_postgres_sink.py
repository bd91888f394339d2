"""PostgreSQL sink: COPY into a staging table, then one upsert per flush.

Sink: ``write`` buffers; ``flush`` COPYs the buffered rows into a temporary table
and upserts them with ``INSERT ... ON CONFLICT (key) DO UPDATE`` in one
transaction, so a batch written twice (a retry after a crash) leaves the table
as if written once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs
import psycopg
from psycopg import sql

from dataflare import ConfigurationError, PluginIOError, Record

from ._base import Sink
from ._postgres_common import (
    PostgresConnection,
    conninfo,
    open_connection,
    qualified,
)

__all__ = ["PostgresSink", "PostgresSinkConfig"]


@attrs.frozen(kw_only=True)
class PostgresSinkConfig(PostgresConnection):
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
        self._dsn = conninfo(config, "postgres sink")
        self._conn: psycopg.Connection[Any] | None = None
        self._table_columns: list[str] | None = None
        self._json_columns: set[str] = set()
        self._buffer: list[tuple[int, dict[str, Any]]] = []
        self._what = f"postgres sink (table {config.table})"

    def takes_concurrent_writers(self) -> bool:
        """Always: each writer stages in its own temporary table, and an upsert by key
        lets a record written twice (or by two writers) land once."""
        return True

    def write_for(self, partitions: Sequence[str]) -> None:
        """Nothing to set: a writer of some partitions writes as any other."""

    def connect(self) -> None:
        self._conn = open_connection(self._dsn, self._what, autocommit=False)
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
                qualified(self.config.table),
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
        target = qualified(config.table)
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
