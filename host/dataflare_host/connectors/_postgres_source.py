"""PostgreSQL source: a table or query read by key, or CDC from a replication slot.

Source, incremental mode: pages of ``WHERE key > last ORDER BY key LIMIT n``;
the position is the last key read, so a restart resumes right after it. The key
column must be unique and new rows must get larger keys (a serial, an identity,
a timestamp with a tie-breaking unique key is *not* enough).

Source, CDC mode: changes decoded by ``test_decoding`` from a logical replication
slot, released only in ``ack()``, after every sink flushed them (:mod:`._postgres_cdc`).

Stopping: a read never blocks a stop. Statements run with ``lock_timeout``, so
a read waiting for a lock someone else holds (``LOCK TABLE``, ``ALTER TABLE``,
``VACUUM FULL``) gives up after ``lock_timeout_ms`` and the source polls again
(a locked table is "no rows yet", not an error); and :meth:`PostgresSource.interrupt`,
which the pipeline's reader threads call from another thread when the run
stops, cancels the statement a read is running on the server, so the read
returns at once with no records. The connection itself is used by one
statement at a time: a cancel only ever reaches a read's statement, never an
``ack()`` the pipeline runs meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import attrs
import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from dataflare import ConfigurationError, PluginIOError, Record
from dataflare_host.connectors._base import Position, Source, SourceBatch
from dataflare_host.connectors._postgres_cdc import SlotChanges, change_record
from dataflare_host.connectors._postgres_common import (
    PostgresConnection,
    cancel_statement,
    conninfo,
    jsonable,
    key_text,
    open_connection,
    parse_lsn,
    qualified,
    set_lock_timeout,
    to_json,
)

__all__ = ["PostgresSource", "PostgresSourceConfig"]

log = logging.getLogger("dataflare.connectors.postgres")

_CANCEL_TIMEOUT_S = 2.0
"""How long a cancel request may take to reach the server (an unreachable one)."""

_ACK_WAIT_S = 2.0
"""How long a stopping source's ack() waits for a read still on the connection."""


@attrs.frozen
class PostgresSourceConfig(PostgresConnection):
    """``connection:`` of the PostgreSQL source.

    ``dsn``: a libpq connection string or URL (or the design's ``host``, ``port``,
    ``database``, ``user``, ``password`` keys instead). Either ``table`` (``name`` or
    ``schema.name``) or ``query`` (any SELECT; read as a subquery). ``key_column``
    orders and resumes the read (default: the table's one-column primary key);
    ``columns`` limits the row to those columns (default: all). Rows become
    compact JSON objects (dates, decimals, UUIDs as strings); the key column's
    value, as text, is the record key.

    The source keeps polling for new rows every ``poll_interval_ms`` unless
    ``stop_when_caught_up`` is true, in which case it ends once no rows remain.
    A read waits at most ``lock_timeout_ms`` for a lock another session holds
    on the table (PostgreSQL's ``lock_timeout``), then polls again later: a
    locked table delays the source but neither fails it nor keeps it from stopping.

    ``cdc: true`` streams inserts, updates and deletes of ``table`` (or of every
    table when none is given) from the logical replication slot ``slot``
    (created with ``test_decoding`` when missing; needs ``wal_level=logical``).
    """

    table: str | None = None
    query: str | None = None
    key_column: str | None = None
    columns: list[str] | None = None
    cdc: bool = False
    slot: str | None = None
    poll_interval_ms: int = 500
    stop_when_caught_up: bool = False
    lock_timeout_ms: int = 1000

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
        if not 1 <= self.lock_timeout_ms <= 3_600_000:
            raise ConfigurationError(
                f"postgres source: lock_timeout_ms is {self.lock_timeout_ms}; give 1 to "
                "3600000 (how long a read waits for a table lock before polling again)"
            )


class _Interrupted(Exception):
    """A read was interrupted (the pipeline is stopping): it returns no records."""


class PostgresSource(Source):
    """Rows of a table or query by increasing key, or a table's changes (CDC).

    :meth:`read` runs in a pipeline's reader thread while :meth:`ack`,
    :meth:`interrupt` and :meth:`close` may come from other threads.
    """

    Config = PostgresSourceConfig
    config: PostgresSourceConfig

    def __init__(self, config: PostgresSourceConfig, params: Mapping[str, str]) -> None:
        super().__init__(config, params)
        self._dsn = conninfo(config, "postgres source")
        self._conn: psycopg.Connection[Any] | None = None
        self._offset = 0
        self._last: Any = None
        self._key: str | None = config.key_column
        self._page: sql.Composed | None = None
        self._first_page: sql.Composed | None = None
        self._changes = (
            SlotChanges(config.slot, self._what) if config.cdc and config.slot else None
        )
        # Stopping: ``_statement_lock`` lets one statement at a time use the
        # connection (a read's, or ack()'s), so that ``_in_read`` says exactly
        # whether a cancel would hit a read; ``_state`` guards the flags.
        self._statement_lock = threading.Lock()
        self._state = threading.Lock()
        self._in_read = False
        self._interrupted = False
        self._close_pending = False
        self._wake = threading.Event()
        self._locked_since: float | None = None

    @property
    def _what(self) -> str:
        config = self.config
        target = f"table {config.table}" if config.table else "query"
        return f"postgres source ({target})"

    def connect(self, position: Position | None) -> None:
        config = self.config
        # Autocommit: an idle source must not hold a transaction open (it would
        # block VACUUM, and replication slot creation waits for open transactions).
        self._conn = open_connection(self._dsn, self._what, autocommit=True)
        with self._state:
            self._interrupted = self._close_pending = False
            self._wake.clear()
        position = position or {}
        self._offset = int(position.get("offset", 0))
        try:
            if config.cdc:
                self._connect_cdc(position)
                # After creating the slot, which waits for open transactions by design.
                set_lock_timeout(self._conn, config.lock_timeout_ms)
            else:
                set_lock_timeout(self._conn, config.lock_timeout_ms)
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
            origin: sql.Composable = qualified(config.table)
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
        try:
            self._conn.execute(sql.SQL("{} LIMIT %s").format(base), (0,))
        except psycopg.errors.LockNotAvailable:
            # Waiting here would block the pipeline's start, where a stop cannot
            # interrupt it: the first read that gets the lock checks the same.
            log.warning(
                "%s: locked by another session; the first read checks the columns "
                "once the lock is released",
                self._what,
            )

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
        """Up to ``max_records`` rows or changes; an empty batch when interrupted or locked."""
        if self._conn is None:
            raise PluginIOError(f"{self._what} is not connected")
        deadline = time.monotonic() + timeout_s
        while True:
            locked = False
            try:
                records = (
                    self._read_changes(max_records)
                    if self.config.cdc
                    else self._read_page(max_records)
                )
            except _Interrupted:
                return SourceBatch([], self._position())
            except psycopg.errors.LockNotAvailable:
                locked, records = True, []
                self._note_locked()
            except psycopg.errors.QueryCanceled as exc:
                if self._interrupted:  # our own cancel: the pipeline is stopping
                    return SourceBatch([], self._position())
                raise PluginIOError(
                    f"{self._what}: read cancelled on the server: {exc} (statement_timeout, "
                    "or pg_cancel_backend from another session); run the pipeline again "
                    "to resume"
                ) from exc
            except psycopg.Error as exc:
                raise PluginIOError(f"{self._what}: read failed: {exc}") from exc
            if records:
                self._note_unlocked()
                return SourceBatch(records, self._position())
            if not locked:
                self._note_unlocked()
                if self.config.stop_when_caught_up:
                    return None
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._interrupted:
                return SourceBatch([], self._position())
            # An Event, not sleep(): interrupt() ends the wait at once.
            self._wake.wait(min(remaining, self.config.poll_interval_ms / 1000))

    def interrupt(self) -> None:
        """Stop reading, from any thread: the pipeline is stopping.

        Cancels the statement a read is running on the server (a read waiting
        for a lock, a slow query) and wakes a read waiting to poll again; that
        read, and every later one until the next :meth:`connect`, returns an
        empty batch. Safe to call more than once, and when no read is running.
        """
        with self._state:
            self._interrupted = True
            self._wake.set()
            conn = self._conn if self._in_read else None
            if conn is not None:
                # Under the lock: the read cannot end its statement and start
                # another one before the cancel request reached the server.
                cancel_statement(conn, self._what, _CANCEL_TIMEOUT_S)

    @contextlib.contextmanager
    def _statement(self) -> Iterator[psycopg.Connection[Any]]:
        """The connection, for one statement of a read that :meth:`interrupt` may cancel."""
        with self._statement_lock:
            with self._state:
                if self._interrupted or self._conn is None:
                    raise _Interrupted
                conn = self._conn
                self._in_read = True
            try:
                yield conn
            finally:
                with self._state:
                    self._in_read = False
                    close = self._close_pending
                if close:  # close() came while this statement ran: it is ours to close
                    conn.close()

    def _note_locked(self) -> None:
        # One warning per locked spell, not one per poll.
        if self._locked_since is None:
            self._locked_since = time.monotonic()
            log.warning(
                "%s: waiting for a lock another session holds on the table "
                "(reads give up after lock_timeout_ms=%d and poll again)",
                self._what,
                self.config.lock_timeout_ms,
            )

    def _note_unlocked(self) -> None:
        if self._locked_since is not None:
            log.warning(
                "%s: the lock was released after %.1f s; reading again",
                self._what,
                time.monotonic() - self._locked_since,
            )
            self._locked_since = None

    def _read_page(self, max_records: int) -> list[Record]:
        assert self._page is not None
        assert self._first_page is not None
        with self._statement() as conn, conn.cursor(row_factory=dict_row) as cursor:
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
            records.append(Record(to_json(document), key_text(value), None, None, self._offset))
            self._offset += 1
            self._last = jsonable(value)
        return records

    # CDC -----------------------------------------------------------------------------------

    def _connect_cdc(self, position: Mapping[str, Any]) -> None:
        assert self._conn is not None
        assert self._changes is not None
        config = self.config
        self._changes.resume(position)
        if config.table is not None:
            self._changes.only_table(self._conn, config.table)
            if self._key is None:
                try:
                    self._key = self._primary_key(config.table)
                except ConfigurationError:
                    self._key = None  # changes then have no record key
        self._changes.open_slot(self._conn)

    def _read_changes(self, max_records: int) -> list[Record]:
        assert self._changes is not None
        records = []
        for change in self._changes.next_changes(self._peek, max_records):
            records.append(change_record(change, self._key, self._offset))
            self._offset += 1
        return records

    def _peek(self, limit: int) -> list[tuple[str, str]]:
        with self._statement() as conn:
            rows = conn.execute(
                "SELECT lsn::text, data FROM pg_logical_slot_peek_changes(%s, NULL, %s, "
                "'skip-empty-xacts', '1')",
                (self.config.slot, limit),
            ).fetchall()
        return [(str(lsn), str(data)) for lsn, data in rows]

    def _position(self) -> Position:
        if self._changes is None:
            return {"last": self._last, "offset": self._offset}
        return self._changes.position(self._offset)

    def ack(self, position: Position) -> None:
        """CDC: let the slot release the changes of transactions up to ``position``."""
        if not self.config.cdc or not position or not position.get("lsn"):
            return
        if self._conn is None:
            raise PluginIOError(f"{self._what} is not connected")
        if parse_lsn(position["lsn"]) == 0:
            return
        if not self._acquire_for_ack():
            # Skipping an ack is always safe: the slot keeps the changes and the
            # next run delivers them again (at least once).
            log.warning(
                "%s: a read is still running after the stop; slot %r is not advanced "
                "now (its changes are delivered again on the next run)",
                self._what,
                self.config.slot,
            )
            return
        try:
            if self._conn is None:
                raise PluginIOError(f"{self._what} is not connected")
            self._conn.execute(
                "SELECT pg_replication_slot_advance(%s, %s::pg_lsn)",
                (self.config.slot, position["lsn"]),
            )
        except psycopg.Error as exc:
            raise PluginIOError(
                f"{self._what}: cannot advance slot {self.config.slot!r}: {exc}"
            ) from exc
        finally:
            self._statement_lock.release()

    def _acquire_for_ack(self) -> bool:
        """Wait for the connection; once stopping, give up after ``_ACK_WAIT_S``."""
        waited_since: float | None = None
        while not self._statement_lock.acquire(timeout=0.1):
            if not self._interrupted:
                continue  # a running read ends within lock_timeout_ms or is cancelled
            if waited_since is None:
                waited_since = time.monotonic()
            elif time.monotonic() - waited_since >= _ACK_WAIT_S:
                return False
        return True

    def close(self) -> None:
        """Close the connection; a read still running is cancelled and closes it when it ends."""
        with self._state:
            conn, self._conn = self._conn, None
            if conn is None:
                return
            self._interrupted = True
            self._wake.set()
            if self._in_read:
                # A reader the pipeline stopped waiting for: closing the
                # connection under its statement is not safe, so cancel the
                # statement and leave the closing to that reader.
                self._close_pending = True
                cancel_statement(conn, self._what, _CANCEL_TIMEOUT_S)
                return
        conn.close()
