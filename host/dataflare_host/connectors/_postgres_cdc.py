"""The PostgreSQL source's CDC mode: a table's changes from a logical replication slot.

Changes decoded by ``test_decoding`` are read with ``pg_logical_slot_peek_changes``
and released with ``pg_replication_slot_advance`` only in the source's ``ack()``,
after every sink flushed them: a crash before that re-delivers them (at least
once). Transactions are delivered in commit order; the position is the commit
LSN of the last whole transaction delivered (plus how far into a transaction
larger than one batch). Records are ``{"op": "insert"|"update"|"delete"|"truncate",
"table": ..., "row": {...}}`` (plus ``"old"``, the old key, when an update changed
it); a delete's row holds only the replica identity (the primary key, unless
``REPLICA IDENTITY FULL``). Changes made before the slot was created are not
delivered: CDC has no snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import psycopg

from dataflare import ConfigurationError, Record
from dataflare_host.connectors._base import Position
from dataflare_host.connectors._postgres_common import key_text, lsn_text, parse_lsn, to_json
from dataflare_host.connectors._postgres_test_decoding import parse_change

__all__ = ["SlotChanges", "change_record"]

Change = tuple[str, str]
"""A decoded change as peeked: its LSN and ``test_decoding``'s text."""


class SlotChanges:
    """What of a replication slot's changes the source delivered, and the next ones to."""

    def __init__(self, slot: str, what: str) -> None:
        self.slot = slot
        self._what = what
        # The commit LSN of the last whole transaction delivered, and a transaction
        # larger than a batch that is only partly delivered.
        self._done_lsn = 0
        self._partial: tuple[int, int] | None = None
        self._table_prefix: str | None = None
        self._peek_hint = 0

    def resume(self, position: Mapping[str, Any]) -> None:
        """Go on after ``position`` (a CDC position, or empty to start at the slot)."""
        self._done_lsn = parse_lsn(position["lsn"]) if position.get("lsn") else 0
        partial = position.get("partial")
        self._partial = (parse_lsn(partial[0]), int(partial[1])) if partial else None

    def only_table(self, conn: psycopg.Connection[Any], table: str) -> None:
        """Deliver the changes of ``table`` alone (every table's by default)."""
        row = conn.execute(
            "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.oid = %s::regclass",
            (table,),
        ).fetchone()
        assert row is not None
        self._table_prefix = f"table {row[0]}: "

    def open_slot(self, conn: psycopg.Connection[Any]) -> None:
        """Create the slot (``test_decoding``) when missing; refuse one of another kind."""
        slot = conn.execute(
            "SELECT plugin, database = current_database() FROM pg_replication_slots "
            "WHERE slot_name = %s",
            (self.slot,),
        ).fetchone()
        if slot is None:
            conn.execute(
                "SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (self.slot,)
            )
        elif slot[0] != "test_decoding" or not slot[1]:
            raise ConfigurationError(
                f"{self._what}: replication slot {self.slot!r} exists but is not a "
                "test_decoding slot of this database"
            )

    def next_changes(self, peek: Callable[[int], list[Change]], max_records: int) -> list[Change]:
        """Up to ``max_records`` changes after those delivered, through ``peek(limit)``
        (the slot's first ``limit`` changes); they count as delivered from now on."""
        # Peeking starts at the slot's acknowledged position every time: fetch
        # enough to get past what was delivered but not acknowledged yet, and more
        # when that was not enough.
        limit = self._peek_hint + max_records + 2
        while True:
            rows = peek(limit)
            changes, skipped, done_lsn, partial = self._select_changes(rows, max_records)
            if len(changes) >= max_records or len(rows) < limit:
                break
            limit *= 2
        self._peek_hint = skipped + len(changes)
        self._done_lsn, self._partial = done_lsn, partial
        return changes

    def _select_changes(
        self, rows: list[Change], max_records: int
    ) -> tuple[list[Change], int, int, tuple[int, int] | None]:
        """The next changes to deliver, in whole transactions where they fit.

        Returns them, how many peeked rows came before them, and the position
        after them (the last whole transaction's commit LSN, and the partly
        delivered transaction if any). Changes the source's state not at all.
        """
        selected: list[Change] = []
        skipped = 0
        done_lsn, partial = self._done_lsn, self._partial
        transaction: list[Change] = []
        for lsn, data in rows:
            if data.startswith("BEGIN"):
                transaction = []
                continue
            if not data.startswith("COMMIT"):
                transaction.append((lsn, data))
                continue
            commit = parse_lsn(lsn)
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

    def position(self, offset: int) -> Position:
        """Where the source resumes: after the changes delivered so far."""
        partial = [lsn_text(self._partial[0]), self._partial[1]] if self._partial else None
        return {"lsn": lsn_text(self._done_lsn), "partial": partial, "offset": offset}


def change_record(change: Change, key_column: str | None, offset: int) -> Record:
    """The record of a change: its JSON document, the key column's value as key (from the
    old key when the row lacks it), and ``lsn`` and ``op`` metadata."""
    lsn, text = change
    table, operation, row, old = parse_change(text)
    document: dict[str, Any] = {"op": operation, "table": table, "row": row}
    if old is not None:
        document["old"] = old
    key = None
    if key_column is not None:
        key_value = row.get(key_column, (old or {}).get(key_column))
        key = None if key_value is None else key_text(key_value)
    return Record(to_json(document), key, None, {"lsn": lsn, "op": operation}, offset)
