"""The PostgreSQL source (keyset and CDC) and upsert sink, against a real server."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.servers import PostgresServer

from dataflare import ConfigurationError, PluginIOError, Record
from dataflare_host.connectors import (
    PostgresSink,
    PostgresSinkConfig,
    PostgresSource,
    PostgresSourceConfig,
    SourceBatch,
)

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def dsn(postgres_server: PostgresServer) -> str:
    """A fresh database for this module; tests use tables of their own in it."""
    return postgres_server.create_database("pg")


@pytest.fixture
def table(dsn: str) -> str:
    """A unique table name (the table is not created)."""
    return f"t_{uuid.uuid4().hex[:10]}"


def sql(dsn: str, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def read_all(source: PostgresSource, max_records: int = 10) -> tuple[list[Record], Any]:
    records: list[Record] = []
    position = None
    while (batch := source.read(max_records, 1.0)) is not None:
        assert len(batch.records) <= max_records
        records.extend(batch.records)
        position = batch.position
    return records, position


def make_items(dsn: str, table: str, count: int) -> None:
    sql(dsn, f"CREATE TABLE {table} (id bigint PRIMARY KEY, name text, "
             "amount numeric(10, 2), day date)")
    sql(dsn, f"INSERT INTO {table} SELECT i, 'item ' || i, i * 1.5, "
             "date '2024-01-01' + i FROM generate_series(1, %s) AS i", (count,))


def source_for(dsn: str, **options: Any) -> PostgresSource:
    options.setdefault("stop_when_caught_up", True)
    return PostgresSource(PostgresSourceConfig(dsn=dsn, **options), {})


# -- source: table or query by key ----------------------------------------------------------


def test_reads_a_table_in_key_order_as_json(dsn: str, table: str) -> None:
    """Every row once, as compact JSON with dates and decimals as text, keyed by the key."""
    make_items(dsn, table, 25)
    with source_for(dsn, table=table) as source:
        source.connect(None)
        records, position = read_all(source)
    assert [r.key for r in records] == [str(i).encode() for i in range(1, 26)]
    assert [r.offset for r in records] == list(range(25))
    assert records[0].value == (
        b'{"id":1,"name":"item 1","amount":"1.50","day":"2024-01-02"}'
    )
    assert position == {"last": 25, "offset": 25}


def test_resuming_from_a_position_reads_exactly_the_remaining_rows(dsn: str, table: str) -> None:
    """A new source connected at a checkpointed position starts right after it."""
    make_items(dsn, table, 23)
    with source_for(dsn, table=table) as first:
        first.connect(None)
        batch = first.read(10, 1.0)
    assert batch is not None
    position = json.loads(json.dumps(batch.position))  # as a checkpoint file holds it
    with source_for(dsn, table=table) as resumed:
        resumed.connect(position)
        rest, _ = read_all(resumed, 4)
    assert [r.json()["id"] for r in rest] == list(range(11, 24))
    assert [r.offset for r in rest] == list(range(10, 23))


def test_query_source_with_columns(dsn: str, table: str) -> None:
    """A query is read by its key column; ``columns`` picks the fields of the value."""
    make_items(dsn, table, 10)
    query = f"SELECT id, name, amount FROM {table} WHERE id % 2 = 0"
    with source_for(dsn, query=query, key_column="id", columns=["name"]) as source:
        source.connect(None)
        records, _ = read_all(source, 2)
    assert [(r.key, r.json()) for r in records] == [
        (str(i).encode(), {"name": f"item {i}"}) for i in (2, 4, 6, 8, 10)
    ]


def test_an_endless_source_returns_empty_batches_then_new_rows(dsn: str, table: str) -> None:
    """Without stop_when_caught_up, reading past the end waits, then sees rows added later."""
    make_items(dsn, table, 2)
    source = PostgresSource(PostgresSourceConfig(dsn=dsn, table=table, poll_interval_ms=10), {})
    with source:
        source.connect(None)
        assert [r.offset for r in source.read(10, 0.1).records] == [0, 1]  # type: ignore[union-attr]
        empty = source.read(10, 0.05)
        assert empty == SourceBatch([], {"last": 2, "offset": 2})
        sql(dsn, f"INSERT INTO {table} (id, name) VALUES (3, 'late')")
        late = source.read(10, 1.0)
    assert late is not None
    assert [r.json()["name"] for r in late.records] == ["late"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"table": "a", "query": "SELECT 1"}, "exactly one of table or query"),
        ({}, "exactly one of table or query"),
        ({"query": "SELECT 1 AS id"}, "a query needs key_column"),
        ({"table": "a", "cdc": True}, "needs a slot name"),
        ({"table": "a", "cdc": True, "slot": "Bad-Name"}, "must be 1-63 lowercase"),
    ],
)
def test_bad_source_configs_are_refused(options: dict[str, Any], message: str) -> None:
    """Contradicting or incomplete settings fail when the config is built."""
    with pytest.raises(ConfigurationError, match=message):
        PostgresSourceConfig(dsn="dbname=x", **options)


def test_missing_table_and_keyless_table_are_clear_errors(dsn: str, table: str) -> None:
    """A missing table is an I/O error naming it; a table without a primary key asks for one."""
    with pytest.raises(PluginIOError, match=f"table {table}.*does not exist"):
        source_for(dsn, table=table).connect(None)
    sql(dsn, f"CREATE TABLE {table} (n int)")
    with pytest.raises(ConfigurationError, match=r"set key_column .*no primary key"):
        source_for(dsn, table=table).connect(None)


def test_unreachable_server_names_the_dsn_without_password() -> None:
    """Connection failures say where, but never print the password."""
    source = source_for("host=127.0.0.1 port=1 user=u password=hunter2 dbname=d "
                        "connect_timeout=2", table="t")
    with pytest.raises(PluginIOError, match="cannot connect to PostgreSQL") as info:
        source.connect(None)
    assert "port=1" in str(info.value)
    assert "hunter2" not in str(info.value)


# -- source: CDC ----------------------------------------------------------------------------


@pytest.fixture
def slot(dsn: str) -> Iterator[str]:
    """A unique replication slot name; the slot is dropped after the test."""
    name = f"s_{uuid.uuid4().hex[:10]}"
    yield name
    sql(dsn, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
             "WHERE slot_name = %s", (name,))


def cdc_source(dsn: str, table: str, slot: str) -> PostgresSource:
    return source_for(dsn, table=table, cdc=True, slot=slot)


def test_cdc_sees_inserts_updates_and_deletes_in_commit_order(
    dsn: str, table: str, slot: str
) -> None:
    """Changes after the slot exists arrive as JSON documents naming op, table and row."""
    sql(dsn, f"CREATE TABLE {table} (id int PRIMARY KEY, name text, price numeric)")
    sql(dsn, f"CREATE TABLE {table}_other (id int PRIMARY KEY)")
    with cdc_source(dsn, table, slot) as source:
        source.connect(None)  # creates the slot: changes from here on
        sql(dsn, f"INSERT INTO {table} VALUES (1, 'a', 1.5), (2, 'it''s', NULL)")
        sql(dsn, f"INSERT INTO {table}_other VALUES (1)")
        sql(dsn, f"UPDATE {table} SET name = 'b' WHERE id = 1")
        sql(dsn, f"DELETE FROM {table} WHERE id = 2")
        records, position = read_all(source)
    documents = [r.json() for r in records]
    assert [(d["op"], d["row"]) for d in documents] == [
        ("insert", {"id": 1, "name": "a", "price": "1.5"}),
        ("insert", {"id": 2, "name": "it's", "price": None}),
        ("update", {"id": 1, "name": "b", "price": "1.5"}),
        ("delete", {"id": 2}),
    ]
    assert {d["table"] for d in documents} == {f"public.{table}"}
    assert [r.key for r in records] == [b"1", b"2", b"1", b"2"]
    assert [r.metadata["op"] for r in records] == ["insert", "insert", "update", "delete"]
    assert position["offset"] == 4


def test_cdc_redelivers_unacked_changes_after_a_reconnect(dsn: str, table: str, slot: str) -> None:
    """Only ack() releases changes: a new source re-reads what was not acknowledged."""
    sql(dsn, f"CREATE TABLE {table} (id int PRIMARY KEY)")
    with cdc_source(dsn, table, slot) as source:
        source.connect(None)
        for i in range(1, 5):
            sql(dsn, f"INSERT INTO {table} VALUES ({i})")
        first = source.read(2, 1.0)
        assert first is not None
        assert [r.json()["row"]["id"] for r in first.records] == [1, 2]
        second = source.read(2, 1.0)
        assert second is not None
        assert [r.json()["row"]["id"] for r in second.records] == [3, 4]
        source.ack(first.position)  # only the first batch reached the sink
    # A crash after the first ack: the second batch comes again; the first does not.
    with cdc_source(dsn, table, slot) as again:
        again.connect(None)
        records, _ = read_all(again)
        assert [r.json()["row"]["id"] for r in records] == [3, 4]
        sql(dsn, f"INSERT INTO {table} VALUES (5)")
        records, position = read_all(again)
        assert [r.json()["row"]["id"] for r in records] == [5]
        again.ack(position)
    with cdc_source(dsn, table, slot) as after_ack:
        after_ack.connect(None)
        assert after_ack.read(10, 0.1) is None


def test_cdc_splits_a_large_transaction_and_resumes_inside_it(
    dsn: str, table: str, slot: str
) -> None:
    """A transaction bigger than a batch spans batches; a position inside it resumes there."""
    sql(dsn, f"CREATE TABLE {table} (id int PRIMARY KEY)")
    with cdc_source(dsn, table, slot) as source:
        source.connect(None)
        sql(dsn, f"INSERT INTO {table} SELECT generate_series(1, 7)")
        first = source.read(3, 1.0)
        assert first is not None
        assert [r.json()["row"]["id"] for r in first.records] == [1, 2, 3]
        position = json.loads(json.dumps(first.position))
        assert position["partial"][1] == 3
    with cdc_source(dsn, table, slot) as resumed:
        resumed.connect(position)
        records, _ = read_all(resumed, 3)
    assert [r.json()["row"]["id"] for r in records] == [4, 5, 6, 7]
    assert [r.offset for r in records] == [3, 4, 5, 6]


# -- sink -----------------------------------------------------------------------------------


def rows(dsn: str, table: str) -> set[tuple[Any, ...]]:
    return set(sql(dsn, f"SELECT * FROM {table}"))


def sink_for(dsn: str, table: str, **options: Any) -> PostgresSink:
    options.setdefault("key_columns", ["id"])
    return PostgresSink(PostgresSinkConfig(dsn=dsn, table=table, **options), {})


def records_of(*documents: Any) -> list[Record]:
    return [Record.from_json(doc, offset=i) for i, doc in enumerate(documents)]


def test_upsert_is_idempotent(dsn: str, table: str) -> None:
    """Writing the same batch twice leaves the table as if written once; later records win."""
    sql(dsn, f"CREATE TABLE {table} (id int PRIMARY KEY, name text, n int DEFAULT 7)")
    sql(dsn, f"INSERT INTO {table} VALUES (1, 'old', 0)")
    batch = records_of({"id": 1, "name": "one", "n": 1}, {"id": 2, "name": "two", "extra": 1},
                       {"id": 3, "name": "three", "n": 3}, {"id": 2, "name": "two again"})
    with sink_for(dsn, table) as sink:
        sink.connect()
        for _ in range(2):
            sink.write(batch)
            sink.flush()
    assert rows(dsn, table) == {(1, "one", 1), (2, "two again", None), (3, "three", 3)}


def test_flush_failure_rolls_back_and_names_the_record(dsn: str, table: str) -> None:
    """A value the column type rejects fails the whole flush, naming the record's offset."""
    sql(dsn, f"CREATE TABLE {table} (id int PRIMARY KEY, n int)")
    with sink_for(dsn, table) as sink:
        sink.connect()
        sink.write([Record.from_json({"id": 1, "n": 1}, offset=40),
                    Record.from_json({"id": 2, "n": "many"}, offset=41)])
        expected = rf"table {table}\): flush failed at record offset 41: invalid input syntax"
        with pytest.raises(PluginIOError, match=expected):
            sink.flush()
        assert rows(dsn, table) == set()
        sink._buffer.clear()  # the failing batch stays buffered for a retry; drop it here


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"[1, 2]", "record at offset 5 is not a JSON object"),
        (b"not json", "record at offset 5 is not a JSON object"),
        (b'{"name": "x"}', "record at offset 5 has no value for key column 'id'"),
    ],
)
def test_records_that_cannot_be_rows_are_refused(
    dsn: str, table: str, value: bytes, message: str
) -> None:
    """write() names the sink's table and the record's offset."""
    sql(dsn, f"CREATE TABLE {table} (id int PRIMARY KEY, name text)")
    with sink_for(dsn, table) as sink:
        sink.connect()
        with pytest.raises(PluginIOError, match=rf"postgres sink \(table {table}\): {message}"):
            sink.write([Record(value, offset=5)])


def test_sink_config_is_checked_against_the_table(dsn: str, table: str) -> None:
    """A missing table, an unknown column and a key without a unique index are config errors."""
    with pytest.raises(ConfigurationError, match="does not exist; create it or set create_table"):
        sink_for(dsn, table).connect()
    sql(dsn, f"CREATE TABLE {table} (id int, name text)")
    with pytest.raises(ConfigurationError, match="no column 'nope'"):
        sink_for(dsn, table, columns=["id", "nope"]).connect()
    with pytest.raises(ConfigurationError, match="need a primary key or unique index"):
        sink_for(dsn, table).connect()


def test_json_mode_creates_the_table_and_upserts_key_and_value(dsn: str, table: str) -> None:
    """mode json writes the record key and the whole value (any JSON) to a jsonb column."""
    with sink_for(dsn, table, key_columns=["key"], mode="json", create_table=True) as sink:
        sink.connect()
        sink.write([Record(b'[1, {"a": null}]', b"k1"), Record(b'"text"', b"k2"),
                    Record(b"3", b"k1")])
    assert rows(dsn, table) == {("k1", 3), ("k2", "text")}


def test_columns_mode_creates_a_table_from_the_first_rows(dsn: str, table: str) -> None:
    """create_table guesses column types from the JSON values of the first batch."""
    with sink_for(dsn, table, create_table=True) as sink:
        sink.connect()
        sink.write(records_of({"id": 1, "name": "a", "ok": True, "x": 1.5, "tags": ["t"]}))
    assert sql(dsn, f"SELECT * FROM {table}") == [(1, "a", True, 1.5, ["t"])]


# PostgreSQL text cannot hold NUL characters.
texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                max_size=12)
json_values = st.none() | st.booleans() | st.integers(-(2**31), 2**31 - 1) | texts


@pytest.fixture(scope="module")
def prop_conn(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """One connection for the property test's set-up and checks (examples run by the dozen)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE prop (id int PRIMARY KEY, name text, doc jsonb)")
        yield conn


@given(st.dictionaries(st.integers(-1000, 1000),
                       st.fixed_dictionaries({"name": texts, "doc": json_values}),
                       max_size=30))
def test_sink_of_any_batch_then_select_equals_the_batch(
    dsn: str, prop_conn: psycopg.Connection[Any], documents: dict[int, dict[str, Any]]
) -> None:
    """Any set of JSON objects with unique keys reads back exactly, text and JSON intact."""
    prop_conn.execute("DELETE FROM prop")
    with sink_for(dsn, "prop") as sink:
        sink.connect()
        sink.write(records_of(*({"id": key, **doc} for key, doc in documents.items())))
    stored = set(prop_conn.execute("SELECT id, name, doc FROM prop").fetchall())
    assert stored == {(key, doc["name"], doc["doc"]) for key, doc in documents.items()}
