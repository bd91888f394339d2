"""The WASM boundary's framings (``dataflare.runtime._wire``, ``wit/plugin.wit``).

``record-batch`` and ``index-list`` carry every record field exactly both ways
(bytes 0x80-0xff and NUL included). What a guest writes is untrusted: anything
that breaks a rule of the framing must raise ``SerializationError``, never
produce records, never escape as another exception, never allocate what a
forged count asks for and never hang.
"""

from __future__ import annotations

import contextlib
import re
import struct
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.paths import REPO
from support.records import any_batches, any_offsets, any_records, any_timestamps, as_dict

from dataflare import Record, SerializationError
from dataflare._record import _get_metadata
from dataflare.runtime import (
    CONTRACT_VERSION,
    decode_accumulator,
    decode_batch,
    decode_index_list,
    decode_kept,
    decode_records,
    decode_request,
    encode_accumulator,
    encode_batch,
    encode_kept,
    encode_records,
    encode_request,
    frame_batch,
)
from dataflare.runtime._state import decode_entries
from dataflare.runtime._trusted_records import build_trusted_records
from dataflare_host.testing import metadata

# Every byte, NUL and the Latin-1 upper half weighted in: the risky part of bytes-in-text.
wire_bytes = st.binary(max_size=40) | st.lists(
    st.sampled_from([0x00, 0x7F, 0x80, 0xA0, 0xE9, 0xFF]), max_size=12
).map(bytes)

wide_records = st.builds(
    Record,
    wire_bytes,
    key=st.none() | wire_bytes,
    timestamp=any_timestamps,
    metadata=metadata(),
    offset=any_offsets,
)

WIT = REPO / "wit" / "plugin.wit"


def frame(*parts: bytes) -> str:
    """Hand-made framing bytes as the Latin-1 text that crosses the boundary."""
    return b"".join(parts).decode("latin-1")


def u32(*numbers: int) -> bytes:
    return struct.pack(f"<{len(numbers)}I", *numbers)


def i32(*numbers: int) -> bytes:
    return struct.pack(f"<{len(numbers)}i", *numbers)


def i64(*numbers: int) -> bytes:
    return struct.pack(f"<{len(numbers)}q", *numbers)


def header(count: int, flags: int = 0) -> bytes:
    return b"DFR1" + u32(count) + bytes([flags])


# --- the contract document ---------------------------------------------------------


def test_the_wit_package_version_is_the_sdk_contract_version() -> None:
    """The version the host checks components against is the one wit/plugin.wit declares."""
    assert f"package dataflare:plugin@{CONTRACT_VERSION};" in WIT.read_text()


def test_the_worked_example_in_the_wit_file_is_what_the_encoder_writes() -> None:
    """The hex bytes of the WIT file's worked example equal encode_batch's output, and decode
    back to the records it describes: the document cannot drift from the code."""
    text = WIT.read_text()
    block = text.split("/// ```text", 1)[1].split("/// ```", 1)[0]
    hex_bytes = "".join(
        re.match(r"///\s+((?:[0-9a-f]{2} )*[0-9a-f]{2})", line).group(1)  # type: ignore[union-attr]
        for line in block.strip().splitlines()
    )
    documented = bytes.fromhex(hex_bytes)
    assert encode_batch([7, 8], [b"hi", b""], [b"k", None]).encode("latin-1") == documented
    batch = decode_batch(documented.decode("latin-1"), "the example")
    assert (batch.positions, batch.values, batch.keys) == ([7, 8], [b"hi", b""], [b"k", None])
    assert batch.timestamps is None
    assert batch.metadata is None


# --- round trips ---------------------------------------------------------------------


@given(batch=st.lists(wide_records, max_size=12))
def test_request_round_trips(batch: list[Record]) -> None:
    """The host's framing bytes, as the Latin-1 text the export takes, decode back to
    every field of every record."""
    decoded = decode_request(encode_request(batch).decode("latin-1"))
    assert [as_dict(r) for r in decoded] == [as_dict(r) for r in batch]
    assert decoded == batch


@given(batch=any_batches(values=wire_bytes))
def test_encode_batch_is_the_framing_as_latin1_text(batch: list[Record]) -> None:
    """Text whose every character is one byte of the framing (Latin-1)."""
    columns = ([r.offset for r in batch], [r.value for r in batch], [r.key for r in batch])
    text = encode_batch(*columns)
    assert isinstance(text, str)
    assert text.encode("latin-1") == frame_batch(*columns)
    assert decode_batch(frame_batch(*columns), "bytes").values == [r.value for r in batch]


@given(batch=st.lists(wide_records, max_size=8))
def test_absent_columns_are_left_out(batch: list[Record]) -> None:
    """The flags say which optional columns follow; a column no record needs is not sent."""
    flags = encode_request(batch)[8]
    assert bool(flags & 1) == any(r.key is not None for r in batch)
    assert bool(flags & 2) == any(r.timestamp is not None for r in batch)
    assert bool(flags & 4) == any(r.metadata for r in batch)


@given(accumulator=st.none() | wire_bytes)
def test_accumulator_round_trips(accumulator: bytes | None) -> None:
    """An aggregate's state survives its Latin-1 text form."""
    text = encode_accumulator(accumulator)
    if accumulator is None:
        assert text is None
    else:
        assert decode_accumulator(text) == accumulator


def test_accumulator_rejects_wide_text() -> None:
    """Accumulator text with a character above U+00FF is not bytes: SerializationError."""
    with pytest.raises(SerializationError, match="above U\\+00FF"):
        decode_accumulator("caf\u00e9 \u20ac")


@st.composite
def guest_outputs(draw: st.DrawFn) -> tuple[list[Record], int, list[Record], list[int]]:
    """Inputs, how many were consumed, and outputs with non-decreasing sources below it."""
    inputs = draw(any_batches(wire_bytes, min_size=0, max_size=8))
    consumed = draw(st.integers(min_value=0, max_value=len(inputs)))
    if consumed == 0:
        sources: list[int] = []
    else:
        sources = sorted(
            draw(st.lists(st.integers(min_value=0, max_value=consumed - 1), max_size=10))
        )
    # What the guest's plugin made: any fields; the offset is the host's business.
    outputs = [draw(any_records(wire_bytes, offset=any_offsets)) for _ in sources]
    return inputs, consumed, outputs, sources


@given(case=guest_outputs())
def test_records_round_trip(case: tuple[list[Record], int, list[Record], list[int]]) -> None:
    """Outputs come back field for field, each at the offset of the input it came from."""
    inputs, consumed, outputs, sources = case
    decoded, decoded_sources = decode_records(encode_records(outputs, sources), inputs, consumed)
    assert decoded_sources == sources
    assert [as_dict(r) for r in decoded] == [
        {**as_dict(out), "offset": inputs[src].offset}
        for out, src in zip(outputs, sources, strict=True)
    ]


@given(
    kept=st.lists(st.integers(min_value=0, max_value=50), unique=True).map(sorted),
    extra=st.integers(min_value=1, max_value=5),
)
def test_kept_round_trips(kept: list[int], extra: int) -> None:
    """A filter's kept indices come back as the same increasing list."""
    consumed = (kept[-1] if kept else 0) + extra
    assert decode_kept(encode_kept(kept), consumed) == kept


# --- the line column: a file's records cross without a mapping each ---------------


def line_records(file: str, lines: list[int], values: list[bytes]) -> list[Record]:
    """Records as a file source makes them: metadata unmade, (file, line) in slots."""
    return build_trusted_records(
        values, None, None, None, list(range(len(values))), file_lines=([file] * len(lines), lines)
    )


line_batches = st.lists(
    st.tuples(wire_bytes, st.integers(min_value=0, max_value=2**63 - 1)), min_size=1, max_size=12
)
file_names = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


@given(rows=line_batches, file=file_names)
def test_a_files_lines_cross_as_one_name_and_numbers_and_stay_unmade(
    rows: list[tuple[bytes, int]], file: str
) -> None:
    """One file's records cross with the line column (flag bit 3, no mapping per record)
    and arrive equal, with each mapping still unmade until read, both ways."""
    values, lines = [v for v, _ in rows], [n for _, n in rows]
    framed = encode_request(line_records(file, lines, values))
    assert framed[8] & 12 == 8
    decoded = decode_request(framed.decode("latin-1"))
    assert all(_get_metadata(r) == file for r in decoded)  # unmade: the file's name
    # Equality reads metadata, so it comes after the checks that it was never made.
    assert decoded == line_records(file, lines, values)
    assert [r.metadata for r in decoded] == [{"file": file, "line": str(n)} for n in lines]
    text = encode_records(line_records(file, lines, values), list(range(len(values))))
    assert text.encode("latin-1")[8] & 12 == 8
    outputs, _ = decode_records(text, line_records(file, lines, values), len(values))
    assert all(_get_metadata(r) == file for r in outputs)
    assert outputs == line_records(file, lines, values)


def test_the_line_column_is_smaller_than_a_mapping_per_record() -> None:
    def batch() -> list[Record]:
        return line_records("/data/in.jsonl", list(range(1, 1001)), [b"{}"] * 1000)

    made = batch()
    eager = frame_batch(
        [r.offset for r in made], [r.value for r in made], metadata=[r.metadata for r in made]
    )
    assert len(encode_request(batch())) < len(eager) / 2


@pytest.mark.parametrize("case", ["one mapping read", "two files", "a plain record among lines"])
def test_records_that_are_not_one_files_unmade_lines_cross_with_the_metadata_column(
    case: str,
) -> None:
    batch = line_records("a.jsonl", [1, 2, 3], [b"x", b"y", b"z"])
    if case == "one mapping read":
        assert batch[1].metadata == {"file": "a.jsonl", "line": "2"}
    elif case == "two files":
        batch[2:] = line_records("b.jsonl", [3], [b"z"])
    else:
        batch[2] = Record(b"z", offset=2)
    framed = encode_request(batch)
    assert framed[8] & 12 == 4
    assert decode_request(framed.decode("latin-1")) == batch


def test_a_batch_is_given_metadata_or_lines_not_both() -> None:
    with pytest.raises(ValueError, match="not both"):
        frame_batch([0], [b"x"], metadata=[{"a": "b"}], lines=("f", [1]))


def test_a_state_snapshot_with_a_line_column_is_refused() -> None:
    snapshot = frame_batch([0], [b"v"], [b"k"], lines=("f", [1]))
    with pytest.raises(SerializationError, match="no timestamps or metadata"):
        decode_entries(snapshot, "the state")


# --- hand-made framings that break a rule ------------------------------------------

INPUTS = [Record(b"a", offset=10), Record(b"b", offset=11), Record(b"c", offset=12)]

GOOD = frame(
    header(1, 7),
    i64(0),
    u32(1),
    b"x",
    i32(1),
    b"k",
    b"\x01",
    i64(5),
    u32(1),
    u32(1),
    u32(1),
    b"a",
    b"b",
)


def test_the_hand_made_baseline_is_accepted() -> None:
    """The baseline the malformed cases alter is itself a valid framing."""
    outputs, sources = decode_records(GOOD, INPUTS, 3)
    assert sources == [0]
    assert outputs == [Record(b"x", b"k", 5, {"a": "b"}, 10)]


MALFORMED_BATCHES = [
    pytest.param("", "the header needs 9 bytes", id="empty"),
    pytest.param(GOOD[:5], "the header needs", id="truncated-header"),
    pytest.param(GOOD[:-1], "the metadata texts needs 1 bytes", id="truncated-last-column"),
    pytest.param(GOOD + "\x00", "1 bytes follow the last column", id="trailing-byte"),
    pytest.param("XXXX" + GOOD[4:], "not the b'DFR1' magic", id="bad-magic"),
    pytest.param(frame(header(0, 16)), "unknown flag bits 0x10", id="unknown-flag"),
    pytest.param(frame(header(0xFFFFFFFF)), "the positions column needs", id="oversized-count"),
    pytest.param(
        frame(header(1), i64(0), u32(0xFFFFFFFF)), "the values needs", id="value-length-past-end"
    ),
    pytest.param(
        frame(header(2), i64(0, 0), u32(1, 2), b"abc" + b"\x00"),
        "bytes follow",
        id="lengths-short-of-blob",
    ),
    pytest.param(
        frame(header(1, 1), i64(0), u32(0), i32(-2)),
        "key length is below -1",
        id="key-length-below-minus-one",
    ),
    pytest.param(
        frame(header(1, 1), i64(0), u32(0), i32(5), b"ab"), "the keys needs 5", id="key-past-end"
    ),
    pytest.param(
        frame(header(1, 2), i64(0), u32(0), b"\x02", i64(0)),
        "neither 0 nor 1",
        id="timestamp-flag-2",
    ),
    pytest.param(
        frame(header(1, 2), i64(0), u32(0), b"\x01", b"\x00" * 4),
        "the timestamps needs",
        id="timestamp-truncated",
    ),
    pytest.param(
        frame(header(1, 4), i64(0), u32(0), u32(0xFFFFFFFF)),
        "name lengths needs",
        id="oversized-metadata-count",
    ),
    pytest.param(
        frame(header(1, 4), i64(0), u32(0), u32(1), u32(2), u32(1), b"\xff\xfe", b"v"),
        "metadata is not UTF-8",
        id="metadata-name-not-utf8",
    ),
    pytest.param(
        frame(header(1, 4), i64(0), u32(0), u32(1), u32(1), u32(1), b"n", b"\xc3"),
        "metadata is not UTF-8",
        id="metadata-text-truncated-utf8",
    ),
    pytest.param(
        frame(header(1, 4), i64(0), u32(0), u32(2), u32(1, 1), u32(1, 1), b"nn", b"ab"),
        "repeats a metadata name",
        id="metadata-name-twice",
    ),
    pytest.param(GOOD + "\u0100", "above U+00FF", id="not-latin1-text"),
    pytest.param(
        frame(header(1, 12), i64(0), u32(0), u32(0), u32(0), u32(0), u32(1), b"f", i64(1)),
        "both the metadata and the line column",
        id="metadata-and-lines",
    ),
    pytest.param(
        frame(header(1, 8), i64(0), u32(0), u32(0xFFFFFFFF), b"f"),
        "the file name needs",
        id="file-name-past-end",
    ),
    pytest.param(
        frame(header(2, 8), i64(0, 0), u32(0, 0), u32(1), b"f", i64(1)),
        "the line numbers needs 16",
        id="lines-truncated",
    ),
    pytest.param(
        frame(header(1, 8), i64(0), u32(0), u32(1), b"\xff", i64(1)),
        "not UTF-8",
        id="file-name-not-utf8",
    ),
]


@pytest.mark.parametrize(("text", "reason"), MALFORMED_BATCHES)
def test_malformed_framings_are_a_serialization_error(text: str, reason: str) -> None:
    """Each rule of the framing, broken by hand, is named in the SerializationError."""
    started = time.monotonic()
    with pytest.raises(SerializationError) as caught:
        decode_records(text, INPUTS, 3)
    assert reason in str(caught.value)
    assert time.monotonic() - started < 1.0  # a forged count is refused, not honoured


@pytest.mark.parametrize(
    ("positions", "consumed"),
    [((-1,), 3), ((3,), 3), ((9,), 3), ((1, 0), 3), ((0,), 0)],
    ids=["negative", "equals-consumed", "past-consumed", "decreasing", "nothing-consumed"],
)
def test_output_sources_must_be_non_decreasing_and_below_consumed(
    positions: tuple[int, ...], consumed: int
) -> None:
    """A guest's claim about where an output came from is checked, never trusted."""
    count = len(positions)
    text = frame(header(count), i64(*positions), u32(*[1] * count), b"x" * count)
    with pytest.raises(SerializationError, match="source index"):
        decode_records(text, INPUTS, consumed)


MALFORMED_INDEX_LISTS = [
    pytest.param("", "the count needs 4", id="empty"),
    pytest.param(frame(u32(2), u32(0)), "the indices needs 8", id="truncated"),
    pytest.param(frame(u32(0xFFFFFFFF)), "the indices needs", id="oversized-count"),
    pytest.param(frame(u32(1), u32(0), b"\x00"), "follow the last column", id="trailing"),
    pytest.param(frame(u32(1), u32(5)), "below 5", id="index-equals-consumed"),
    pytest.param(frame(u32(2), u32(2, 1)), "found 1 after 2", id="decreasing"),
    pytest.param(frame(u32(2), u32(1, 1)), "found 1 after 1", id="duplicate"),
]


@pytest.mark.parametrize(("text", "reason"), MALFORMED_INDEX_LISTS)
def test_malformed_kept_indices_are_a_serialization_error(text: str, reason: str) -> None:
    with pytest.raises(SerializationError) as caught:
        decode_kept(text, 5)
    assert reason in str(caught.value)


@given(data=st.binary(max_size=120))
def test_arbitrary_bytes_never_escape_as_another_error(data: bytes) -> None:
    """Whatever the guest writes, the decoders answer with records or SerializationError."""
    text = data.decode("latin-1")
    for decode in (
        lambda: decode_kept(text, 3),
        lambda: decode_records(text, INPUTS, 3),
        lambda: decode_index_list(text, "x"),
    ):
        with contextlib.suppress(SerializationError):
            decode()


@given(batch=st.lists(wide_records, max_size=6), cut=st.integers(min_value=0), flip=st.data())
def test_mutated_framings_decode_or_fail_cleanly(
    batch: list[Record], cut: int, flip: st.DataObject
) -> None:
    """A valid framing truncated anywhere fails; with a byte flipped it decodes or fails,
    always with SerializationError and never a record Record itself would refuse."""
    raw = bytearray(encode_records(batch, [0] * len(batch)).encode("latin-1"))
    truncated = bytes(raw[: cut % len(raw)]).decode("latin-1")
    with pytest.raises(SerializationError):
        decode_records(truncated, INPUTS, 3)
    position = flip.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    raw[position] ^= flip.draw(st.integers(min_value=1, max_value=255))
    try:
        outputs, _ = decode_records(bytes(raw).decode("latin-1"), INPUTS, 3)
    except SerializationError:
        return
    assert all(type(r) is Record for r in outputs)


def test_an_absent_timestamp_must_be_zero() -> None:
    """The WIT says an absent timestamp is written as 0: anything else is a forged framing."""
    text = frame(header(1, 2), i64(0), u32(1), b"x", b"\x00", i64(5))
    with pytest.raises(SerializationError, match="absent timestamp is not 0"):
        decode_records(text, INPUTS, 3)


def test_metadata_with_a_lone_surrogate_is_refused_where_the_record_is_built() -> None:
    """UTF-8 cannot carry a lone surrogate (json.loads can produce one): Record refuses it,
    so no batch holding one ever reaches the framing, natively or in the guest."""
    with pytest.raises(ValueError, match="surrogates not allowed"):
        Record(b"x", metadata={"a": "\ud800"})
    with pytest.raises(ValueError, match="surrogates not allowed"):
        Record(b"x").evolve(metadata={"\udfff": "b"})
    assert Record(b"x", metadata={"caf\u00e9": "\u20ac"}).metadata == {"caf\u00e9": "\u20ac"}
