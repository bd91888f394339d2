"""The msgpack batch codec: every batch round-trips; anything else is a SerializationError."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.records import any_batches, any_keys, any_offsets, any_timestamps

from dataflare import Record, SerializationError
from dataflare_host.connectors import FORMAT_VERSION, decode_batch, encode_batch
from dataflare_host.testing import byte_values, json_values, metadata, text_values


@st.composite
def wire_batches(draw: st.DrawFn) -> list[Record]:
    """Batches whose timestamps and offsets span everything msgpack's int64 can hold."""
    count = draw(st.integers(min_value=0, max_value=8))
    return [
        Record(
            draw(byte_values() | text_values() | json_values()),
            key=draw(any_keys),
            timestamp=draw(any_timestamps),
            metadata=draw(metadata()),
            offset=draw(any_offsets),
        )
        for _ in range(count)
    ]


@given(any_batches())
def test_round_trip(batch: list[Record]) -> None:
    """decode_batch(encode_batch(rs)) == rs for every batch."""
    assert decode_batch(encode_batch(batch)) == batch


@given(wire_batches())
def test_round_trip_extreme_fields(batch: list[Record]) -> None:
    """Negative and 64-bit timestamps and offsets, text and JSON values all round-trip."""
    decoded = decode_batch(encode_batch(batch))
    assert decoded == batch
    assert [type(r.value) for r in decoded] == [bytes] * len(batch)


@given(any_batches())
def test_encode_accepts_any_iterable(batch: list[Record]) -> None:
    """encode_batch reads a generator the same as a list."""
    assert encode_batch(r for r in batch) == encode_batch(batch)


def test_empty_batch_round_trips() -> None:
    """An empty batch is valid and decodes to an empty list."""
    assert decode_batch(encode_batch([])) == []


def test_decoded_metadata_is_read_only() -> None:
    """Decoded records are as immutable as built ones."""
    (record,) = decode_batch(encode_batch([Record(b"v", metadata={"a": "b"})]))
    with pytest.raises(TypeError):
        record.metadata["a"] = "c"  # type: ignore[index]


def _pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


GOOD = [b"v", b"k", 1, {"m": "x"}, 3]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # a byte msgpack never uses
        encode_batch([Record(b"value")])[:-1],  # truncated
        encode_batch([Record(b"value")]) + b"\x00",  # trailing bytes
        b"\x92\x01",  # an array of two announced, one given
    ],
    ids=["empty", "reserved-byte", "truncated", "trailing-bytes", "short-array"],
)
def test_malformed_bytes(data: bytes) -> None:
    """Bytes that are not msgpack are a SerializationError, not msgpack's own exception."""
    with pytest.raises(SerializationError, match="not a msgpack record batch"):
        decode_batch(data)


@pytest.mark.parametrize(
    "obj",
    [5, "batch", {"version": 1}, [FORMAT_VERSION], [FORMAT_VERSION, [], []], [FORMAT_VERSION, {}]],
    ids=["int", "str", "map", "one-item", "three-items", "records-not-a-list"],
)
def test_msgpack_that_is_not_a_batch(obj: object) -> None:
    """Valid msgpack of another shape is a SerializationError."""
    with pytest.raises(SerializationError, match="not a record batch"):
        decode_batch(_pack(obj))


@pytest.mark.parametrize("version", [0, FORMAT_VERSION + 1, "1", None, -1])
def test_wrong_version(version: object) -> None:
    """A batch of another format version is refused, naming the version."""
    with pytest.raises(SerializationError, match="format") as info:
        decode_batch(_pack([version, [GOOD]]))
    assert repr(version) in str(info.value)


def _with(position: int, item: object) -> list[object]:
    record = list(GOOD)
    record[position] = item
    return record


@pytest.mark.parametrize(
    "record",
    [
        GOOD[:4],
        [*GOOD, 0],
        [],
        5,
        None,
        _with(0, "text"),
        _with(0, None),
        _with(1, 7),
        _with(2, "1"),
        _with(2, 1.5),
        _with(3, {"m": 1}),
        _with(3, 5),
        _with(3, [["k", "v"]]),
        _with(4, None),
        _with(4, "3"),
    ],
    ids=[
        "four-fields",
        "six-fields",
        "empty",
        "int",
        "nil",
        "value-str",
        "value-nil",
        "key-int",
        "timestamp-str",
        "timestamp-float",
        "metadata-int-value",
        "metadata-int",
        "metadata-list-of-pairs",
        "offset-nil",
        "offset-str",
    ],
)
def test_malformed_record(record: object) -> None:
    """A malformed record is a SerializationError naming its position in the batch."""
    with pytest.raises(SerializationError, match="record 1 of the batch is malformed"):
        decode_batch(_pack([FORMAT_VERSION, [GOOD, record]]))


def test_good_wire_record_decodes() -> None:
    """The wire layout is [value, key, timestamp, metadata, offset]."""
    assert decode_batch(_pack([FORMAT_VERSION, [GOOD]])) == [Record(b"v", b"k", 1, {"m": "x"}, 3)]


def test_serialization_error_is_a_value_error() -> None:
    """Callers may catch SerializationError as ValueError."""
    with pytest.raises(ValueError, match="not a msgpack record batch"):
        decode_batch(b"\xc1")
