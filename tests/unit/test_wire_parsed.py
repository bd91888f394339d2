"""The parsed column (contract 0.5.0, flags bit 4): the host hands a Python guest the JSON
parse it made of each value, so the guest's ``record.json()`` does not parse it again.

It goes one way: only the guest's reader (``decode_request``) accepts it; every reader
of what a guest wrote refuses it, because ``marshal`` bytes cannot be checked safely.
"""

from __future__ import annotations

import json
import marshal
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.records import holding_parses

from dataflare import Record, SerializationError
from dataflare.runtime import (
    decode_batch,
    decode_records,
    decode_request,
    encode_request,
    frame_batch,
)
from dataflare.runtime._host_parses import has_parse
from dataflare_host.testing import json_documents

PARSED_FLAG = 16


def guest_view(records: list[Record], *, parsed: bool = True) -> list[Record]:
    return decode_request(encode_request(records, parsed=parsed).decode("latin-1"))


def flags_of(frame: bytes) -> int:
    return frame[8]


def test_the_guests_first_json_is_the_hosts_parse_and_later_ones_parse_the_value() -> None:
    # A parse that differs from the value shows which one json() returned.
    records = holding_parses([b'{"from": "value"}'], [{"from": "host"}])
    (seen,) = guest_view(records)
    assert seen.json() == {"from": "host"}
    assert seen.json() == {"from": "value"}
    assert seen.value == b'{"from": "value"}'


def test_the_host_keeps_its_own_parse_after_encoding() -> None:
    (record,) = holding_parses([b"[1]"], [["host"]])
    (seen,) = guest_view([record])
    seen.json().append("changed by the guest")
    assert record.json() == ["host"]  # still the host's to hand over, untouched


def test_records_without_a_parse_parse_their_value_in_the_guest() -> None:
    # A batch of two sources, one of which parsed nothing.
    records = [
        *holding_parses([b'{"a": 1}'], [{"a": 0}]),
        Record(b'{"b": 2}', offset=1),
        *holding_parses([b'{"c": 3}'], [{"c": 0}]),
    ]
    frame = encode_request(records, parsed=True)
    assert flags_of(frame) & PARSED_FLAG
    assert [r.json() for r in decode_request(frame.decode("latin-1"))] == [
        {"a": 0},
        {"b": 2},
        {"c": 0},
    ]


def test_a_batch_with_no_parse_at_all_leaves_the_column_out() -> None:
    records = [Record(b'{"a": 1}', offset=4)]
    assert encode_request(records, parsed=True) == encode_request(records)
    assert not flags_of(encode_request(records, parsed=True)) & PARSED_FLAG


def test_a_guest_that_did_not_ask_gets_no_parsed_column() -> None:
    records = holding_parses([b"1"], [1])
    assert not flags_of(encode_request(records)) & PARSED_FLAG


@given(st.lists(json_documents(), max_size=20))
@settings(max_examples=60)
def test_any_json_documents_cross_as_they_were_parsed(documents: list[Any]) -> None:
    values = [json.dumps(d).encode() for d in documents]
    seen = guest_view(holding_parses(values, [json.loads(v) for v in values]))
    assert [r.json() for r in seen] == [json.loads(v) for v in values]
    assert [r.value for r in seen] == values


@given(st.lists(st.one_of(st.none(), json_documents()), max_size=20))
@settings(max_examples=60)
def test_once_sent_the_hosts_records_keep_their_parses_as_the_column(
    documents: list[Any],
) -> None:
    # None: a record whose parse a plugin took already, among others.
    parses = [json.loads(json.dumps(d)) for d in documents]
    values = [json.dumps(d).encode() if d is not None else b'"taken"' for d in documents]
    records = holding_parses(values, parses)
    for record, document in zip(records, documents, strict=True):
        if document is None:
            record.json()
    first = encode_request(records, parsed=True)
    # Sent again (a time-out's narrowing, a second WASM stage), the same column goes.
    assert encode_request(records, parsed=True) == first
    held = [r for r, d in zip(records, documents, strict=True) if d is not None]
    assert all(has_parse(r) for r in held)
    # json() hands over an equal parse once, then parses the value, as before.
    kept = [p for p, d in zip(parses, documents, strict=True) if d is not None]
    assert [r.json() for r in held] == kept
    assert [r.json() for r in records] == [json.loads(v) for v in values]
    if any(d is not None for d in documents):
        # Every parse handed over: nothing left to send.
        assert not flags_of(encode_request(records, parsed=True)) & PARSED_FLAG


def test_a_parse_handed_over_after_sending_is_the_hosts_own_value() -> None:
    records = holding_parses([b'{"a": [1]}', b'{"b": 2}'], [{"a": [1]}, {"b": 2}])
    encode_request(records, parsed=True)
    first = records[0].json()
    first["a"].append("changed by a plugin")
    assert records[1].json() == {"b": 2}  # the column's other items are untouched
    assert records[0].json() == {"a": [1]}  # parsed again from the value


def test_hosts_readers_refuse_a_parsed_column_from_a_guest() -> None:
    frame = encode_request(holding_parses([b"[2]"], [[2]]), parsed=True)
    with pytest.raises(SerializationError, match=r"the guest's records: unknown flag bits 0x10"):
        decode_records(frame, [Record(b"[2]")], 1)
    with pytest.raises(SerializationError, match=r"a worker's records: unknown flag bits 0x10"):
        decode_batch(frame, "a worker's records")


def with_parsed_tail(tail: bytes, count: int = 1) -> str:
    """A one-record batch whose parsed column is ``tail`` as it stands."""
    head = frame_batch([0] * count, [b"1"] * count)
    flagged = head[:8] + bytes([head[8] | PARSED_FLAG]) + head[9:]
    return (flagged + tail).decode("latin-1")


def sized(blob: bytes) -> bytes:
    return struct.pack("<I", len(blob)) + blob


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        (b"", "the parsed column's length needs 4 bytes"),
        (struct.pack("<I", 50) + b"[", "the parsed column needs 50 bytes"),
        (sized(b"\xff\xff\xff"), "the parsed column is not a marshalled list"),
        (sized(marshal.dumps(7, 4)), "the parsed column is not a marshalled list"),
        (sized(marshal.dumps([1, 2], 4)), "the parsed column is not a list of 1 values"),
    ],
)
def test_a_malformed_parsed_column_is_a_serialization_error(tail: bytes, message: str) -> None:
    with pytest.raises(SerializationError, match=message):
        decode_request(with_parsed_tail(tail))


def test_the_column_is_unmarshalled_only_when_a_record_reads_json() -> None:
    """A plugin that never reads JSON never pays for the column: even a body that is not
    marshal data (the list's header is right) goes unnoticed until json() is called."""
    (record,) = decode_request(with_parsed_tail(sized(b"[\x01\x00\x00\x00\xff")))
    assert record.value == b"1"
    with pytest.raises(SerializationError, match="the parsed column is not marshal data"):
        record.json()


def test_bytes_after_the_parsed_column_are_refused() -> None:
    blob = marshal.dumps([1], 4)
    with pytest.raises(SerializationError, match="1 bytes follow the last column"):
        decode_request(with_parsed_tail(struct.pack("<I", len(blob)) + blob + b"x"))


def test_a_parsed_column_of_the_wrong_length_is_refused_when_written() -> None:
    with pytest.raises(SerializationError, match="holds 1 values for 2 records"):
        frame_batch([0, 1], [b"1", b"2"], parsed=[1])


def test_parses_now_hands_over_the_same_parses_in_one_step() -> None:
    """What a guest does for a plugin that read the last batch's JSON: the column is
    unmarshalled at decoding, and every json() returns what the lazy way returns."""
    records = [*holding_parses([b'{"a": 1}'], [{"a": "host"}]), Record(b'{"b": 2}', offset=1)]
    text = encode_request(records, parsed=True).decode("latin-1")
    eager, lazy = decode_request(text, parses_now=True), decode_request(text)
    assert [has_parse(r) for r in eager] == [True, True]  # the gap holds the no-parse mark
    assert [r.json() for r in eager] == [r.json() for r in lazy] == [{"a": "host"}, {"b": 2}]
    assert not any(map(has_parse, eager + lazy))
    assert eager[0].json() == {"a": 1}  # and then the value itself


def test_parses_now_refuses_a_body_that_is_not_marshal_data_when_decoding() -> None:
    with pytest.raises(SerializationError, match="the parsed column is not marshal data"):
        decode_request(with_parsed_tail(sized(b"[\x01\x00\x00\x00\xff")), parses_now=True)
