"""Record: an immutable value with typed fields, text/JSON accessors and evolve."""

from __future__ import annotations

import json
import threading
from types import MappingProxyType

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.records import any_records, holding_parses

from dataflare import Record
from dataflare_host.testing import json_documents


def test_defaults() -> None:
    """A Record built from nothing is an empty value with no key, timestamp or metadata."""
    record = Record()
    assert (record.value, record.key, record.timestamp, dict(record.metadata), record.offset) == (
        b"", None, None, {}, 0,
    )


@pytest.mark.parametrize("field", ["value", "key", "timestamp", "metadata", "offset"])
def test_fields_cannot_be_assigned(field: str) -> None:
    """Every field of a Record is frozen."""
    record = Record(b"v", key=b"k", timestamp=1, metadata={"a": "b"}, offset=3)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        setattr(record, field, getattr(record, field))


def test_metadata_is_read_only() -> None:
    """A plugin cannot change a record's metadata in place."""
    record = Record(b"v", metadata={"a": "b"})
    with pytest.raises(TypeError):
        record.metadata["a"] = "c"  # type: ignore[index]
    with pytest.raises(AttributeError):
        record.metadata.clear()  # type: ignore[attr-defined]
    assert dict(record.metadata) == {"a": "b"}


def test_metadata_is_copied_from_a_dict() -> None:
    """Changing the dict a record was built from does not change the record."""
    source = {"a": "b"}
    record = Record(b"v", metadata=source)
    source["a"] = "changed"
    source["new"] = "x"
    assert dict(record.metadata) == {"a": "b"}


def test_metadata_is_copied_from_a_read_only_view() -> None:
    """A record built from a read-only view of a dict does not change when that dict does."""
    source = {"a": "b"}
    record = Record(b"v", metadata=MappingProxyType(source))
    source["a"] = "changed"
    assert dict(record.metadata) == {"a": "b"}


def test_metadata_values_in_a_read_only_view_are_checked() -> None:
    """A read-only view with a non-str value is rejected like a dict with one."""
    with pytest.raises(TypeError, match="metadata"):
        Record(b"v", metadata=MappingProxyType({"a": 1}))  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("value", "text"),
        ("value", None),
        ("value", bytearray(b"v")),
        ("key", "k"),
        ("key", 1),
        ("timestamp", "1"),
        ("timestamp", 1.5),
        ("timestamp", True),
        ("offset", None),
        ("offset", "3"),
        ("offset", 2.0),
    ],
)
def test_wrong_field_type_names_the_field(field: str, bad: object) -> None:
    """A field of the wrong type is a TypeError naming the field and the value's type."""
    with pytest.raises(TypeError) as info:
        Record(**{"value": b"v", field: bad})
    message = str(info.value)
    assert repr(field) in message
    assert type(bad).__name__ in message


@pytest.mark.parametrize(
    "bad",
    [{"a": 1}, {"a": None}, {1: "a"}, {b"a": "b"}],
    ids=["int-value", "none-value", "int-key", "bytes-key"],
)
def test_metadata_must_map_str_to_str(bad: dict[object, object]) -> None:
    """Metadata with a non-str key or value is a TypeError naming metadata and the bad type."""
    with pytest.raises(TypeError) as info:
        Record(b"v", metadata=bad)  # type: ignore[arg-type]
    message = str(info.value)
    assert "metadata" in message
    (name, item), = bad.items()
    culprit = name if type(name) is not str else item
    assert type(culprit).__name__ in message


@pytest.mark.parametrize("bad", [5, ["kv"], 0], ids=["int", "list-of-str", "zero"])
def test_metadata_must_be_a_mapping(bad: object) -> None:
    """Metadata that is not a mapping is a TypeError naming metadata, never silently converted."""
    with pytest.raises(TypeError, match="metadata"):
        Record(b"v", metadata=bad)  # type: ignore[arg-type]


@given(st.text(), st.none() | st.text())
def test_from_text_encodes_value_and_key_as_utf8(text: str, key: str | None) -> None:
    """from_text stores UTF-8 bytes; .text and .key_text decode them back."""
    record = Record.from_text(text, key=key, timestamp=5, metadata={"m": "1"}, offset=9)
    assert record.value == text.encode("utf-8")
    assert record.text == text
    assert record.key == (None if key is None else key.encode("utf-8"))
    assert record.key_text == key
    assert (record.timestamp, dict(record.metadata), record.offset) == (5, {"m": "1"}, 9)


def test_from_text_keeps_a_bytes_key() -> None:
    """A bytes key is stored as given, even if it is not UTF-8."""
    assert Record.from_text("v", key=b"\xff").key == b"\xff"


def test_text_of_invalid_utf8_raises() -> None:
    """.text refuses a value that is not UTF-8 instead of guessing."""
    with pytest.raises(UnicodeDecodeError):
        _ = Record(b"\xff").text


@given(json_documents())
def test_from_json_and_json_round_trip(document: object) -> None:
    """from_json writes compact JSON that .json() reads back equal."""
    record = Record.from_json(document)
    assert record.json() == document
    assert record.value == json.dumps(
        document, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def test_from_json_passes_the_other_fields() -> None:
    """from_json sets key, timestamp, metadata and offset like from_text."""
    record = Record.from_json({"a": 1}, key="k", timestamp=2, metadata={"x": "y"}, offset=4)
    assert record == Record(b'{"a":1}', b"k", 2, {"x": "y"}, 4)


@given(any_records(), st.text(), st.text())
def test_evolve_encodes_str_value_and_key(record: Record, value: str, key: str) -> None:
    """evolve(value=str, key=str) stores UTF-8 bytes and keeps the other fields."""
    evolved = record.evolve(value=value, key=key)
    assert evolved.value == value.encode("utf-8")
    assert evolved.key == key.encode("utf-8")
    assert (evolved.timestamp, evolved.metadata, evolved.offset) == (
        record.timestamp, record.metadata, record.offset,
    )


@given(any_records(), any_records())
def test_evolve_replaces_each_given_field(record: Record, other: Record) -> None:
    """evolve with every field of another record gives a record equal to it."""
    evolved = record.evolve(
        value=other.value,
        key=other.key,
        timestamp=other.timestamp,
        metadata=other.metadata,
        offset=other.offset,
    )
    assert evolved == other


def test_evolve_leaves_the_original_unchanged() -> None:
    """evolve returns a new record; the original keeps its fields."""
    record = Record(b"a", offset=1)
    evolved = record.evolve(value=b"b", offset=2)
    assert record == Record(b"a", offset=1)
    assert evolved == Record(b"b", offset=2)


def test_evolve_checks_types() -> None:
    """evolve applies the same type checks as the constructor."""
    with pytest.raises(TypeError, match="'offset'"):
        Record(b"a").evolve(offset="1")
    with pytest.raises(TypeError, match="metadata"):
        Record(b"a").evolve(metadata={"a": 1})


@given(any_records())
def test_equal_fields_make_equal_records(record: Record) -> None:
    """Two records with equal fields are equal, whatever metadata mapping built them."""
    copy = Record(
        bytes(record.value), record.key, record.timestamp, dict(record.metadata), record.offset
    )
    assert copy == record
    assert not copy != record  # noqa: SIM202  # __ne__ agrees with __eq__


@pytest.mark.parametrize(
    "change",
    [
        {"value": b"other"},
        {"key": b"k2"},
        {"key": None},
        {"timestamp": 2},
        {"metadata": {"a": "c"}},
        {"metadata": {}},
        {"offset": 8},
    ],
)
def test_records_differing_in_one_field_are_unequal(change: dict[str, object]) -> None:
    """Equality compares every field, including key, timestamp, metadata and offset."""
    record = Record(b"v", key=b"k", timestamp=1, metadata={"a": "b"}, offset=7)
    assert record != record.evolve(**change)


def test_record_is_not_equal_to_other_types() -> None:
    """A record is not equal to its bare value."""
    assert Record(b"v") != b"v"


def _with_parse_at_hand(value: bytes) -> Record:
    """A record as a JSONL source makes it: its check's parse kept for ``json()``."""
    return holding_parses([value], [json.loads(value)])[0]


@given(json_documents())
def test_json_hands_over_the_sources_parse_once_then_parses_again(document: object) -> None:
    """The first json() returns the parse a source kept, later calls parse anew: every
    caller gets a value of its own, equal to json.loads of the value."""
    value = json.dumps(document).encode()
    record = _with_parse_at_hand(value)
    first = record.json()
    second = record.json()
    assert first == second == json.loads(value)
    if isinstance(first, (dict, list)):
        assert first is not second


def test_changing_what_json_returned_changes_no_later_json() -> None:
    """A plugin that changes the document it read (a map adding a field) leaves the record
    as it was for the next reader."""
    record = _with_parse_at_hand(b'{"a": 1}')
    record.json()["a"] = 2
    assert record.json() == {"a": 1}


def _read_json_after(start: threading.Barrier, record: Record, got: list[object]) -> None:
    start.wait()
    got.append(record.json())


def test_threads_reading_one_record_get_a_value_each_and_one_gets_the_kept_parse() -> None:
    """Threads racing on the first json() (a threaded plugin sharing records): exactly one
    of them receives the source's parse, every other one a parse of its own."""
    for _ in range(50):
        record = _with_parse_at_hand(b'{"n": [1, 2]}')
        kept = record._parsed  # type: ignore[attr-defined]
        start = threading.Barrier(8)
        got: list[object] = []
        threads = [
            threading.Thread(target=_read_json_after, args=(start, record, got)) for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(got) == 8
        assert all(value == kept for value in got)
        assert sum(value is kept for value in got) == 1
        assert len({id(value) for value in got}) == 8


def test_a_kept_parse_is_no_part_of_equality_hash_repr_or_evolve() -> None:
    """The kept parse is not a field: the record equals, hashes and shows as one built
    by the constructor, and evolve makes records without it."""
    kept = _with_parse_at_hand(b'{"a": 1}')
    built = Record(b'{"a": 1}')
    assert kept == built
    assert hash(kept) == hash(built)
    assert repr(kept) == repr(built)
    assert attrs.asdict(kept) == attrs.asdict(built)
    evolved = kept.evolve(key=b"k")
    assert not hasattr(evolved, "_parsed")
    assert evolved.json() == {"a": 1}


def test_json_of_a_value_that_is_not_json_raises_what_json_loads_raises() -> None:
    """record.json() fails as json.loads(record.value) does, type and message."""
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(b'{"a": 1} x')
    with pytest.raises(json.JSONDecodeError) as caught:
        Record(b'{"a": 1} x').json()
    assert str(caught.value) == str(expected.value)


def test_evolve_with_a_new_value_only_keeps_every_other_field() -> None:
    """The one-field fast path of evolve: same key, timestamp, metadata mapping, offset."""
    record = Record(b"a", key=b"k", timestamp=5, metadata={"m": "n"}, offset=7)
    evolved = record.evolve(value=b"b")
    assert evolved == Record(b"b", key=b"k", timestamp=5, metadata={"m": "n"}, offset=7)
    assert evolved.metadata is record.metadata


@pytest.mark.parametrize("value", [b"\xff", b"\x80", b'{"a": 1} x', b""])
def test_json_failure_is_json_loads_own_with_no_context_added(value: bytes) -> None:
    """A plugin's error names what json.loads raised and nothing of json()'s own workings
    (a ProcessingError shows the context chain: it must match in both runtimes)."""
    with pytest.raises((json.JSONDecodeError, UnicodeDecodeError)) as caught:
        Record(value).json()
    with pytest.raises((json.JSONDecodeError, UnicodeDecodeError)) as expected:
        json.loads(value)
    from dataflare.runtime._error_details import exception_text

    assert type(caught.value) is type(expected.value)
    assert exception_text(caught.value) == exception_text(expected.value)
