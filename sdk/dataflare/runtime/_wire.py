"""The framings that cross the WASM boundary (contract 0.5.0, see ``wit/plugin.wit``).

One ``record-batch`` framing both ways (the host's batch, the guest's outputs)
and an ``index-list`` for a filter's verdicts: little-endian counts and lengths
in columns, then the bytes, carried as Latin-1 text in a WIT ``string`` (the
one type wasmtime-py moves as a single byte vector). Columns let CPython do
the per-record work in C (``array`` conversions, one ``join`` per column), so
a Python guest pays about what ``marshal`` cost, and any other language can
read and write the same bytes.

Every decoder checks each count and length against what is left before it
reads: the host decodes what an untrusted guest wrote, and a malformed framing
is a :class:`SerializationError`, never a crash, an oversized allocation or a hang.
The one column no check could make safe to read, the parsed column (``marshal``
bytes), goes one way only: the host writes it and only the guest reads it (and the
host its own bytes again, which its records keep their parses as once sent).
"""

from __future__ import annotations

import marshal
import struct
import sys
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import chain, compress, islice, starmap
from operator import attrgetter, itemgetter, le, lt, methodcaller
from types import MappingProxyType
from typing import Any

import attrs

from dataflare._errors import SerializationError
from dataflare._record import _EMPTY_METADATA, Record, _get_line, _get_metadata

from ._host_parses import NO_PARSE, HostParses, park_parses, parses_to_send
from ._trusted_records import build_trusted_records

__all__ = [
    "CONTRACT_VERSION",
    "NO_PARSE",
    "FileLines",
    "RecordBatch",
    "decode_accumulator",
    "decode_batch",
    "decode_index_list",
    "decode_kept",
    "decode_records",
    "decode_request",
    "encode_accumulator",
    "encode_batch",
    "encode_index_list",
    "encode_kept",
    "encode_records",
    "encode_request",
    "frame_batch",
    "line_column",
    "records_of",
]

CONTRACT_VERSION = "0.5.0"
"""The plugin contract (``dataflare:plugin@...`` in ``wit/plugin.wit``) this SDK speaks."""

MAGIC = b"DFR1"
_HEADER = struct.Struct("<4sIB")
_KEYS, _TIMESTAMPS, _METADATA, _LINES, _PARSED = 1, 2, 4, 8, 16
_KNOWN_FLAGS = _KEYS | _TIMESTAMPS | _METADATA | _LINES
_NAME_LENGTH = struct.Struct("<I")
# The parsed column's marshal version: every CPython from 3.4 on reads it, so a
# host and a guest of different CPython versions agree.
_MARSHAL_VERSION = 4

FileLines = tuple[str, list[int]]
"""A line column: one file name and each record's line number in it, standing for
each record's metadata ``{"file": name, "line": str(number)}``."""
_SWAP = sys.byteorder != "little"  # the framing is little-endian on every host


@attrs.frozen
class RecordBatch:
    """A decoded ``record-batch``: columns of one length, ``None`` for an absent column."""

    positions: list[int]
    values: list[bytes]
    keys: list[bytes | None] | None
    timestamps: list[int | None] | None
    metadata: list[dict[str, str]] | None
    lines: FileLines | None = None
    parsed: list[Any] | HostParses | None = None


# -- encoding (a writer trusts its own columns) -------------------------------


def encode_batch(
    positions: Sequence[int],
    values: Sequence[bytes],
    keys: Sequence[bytes | None] | None = None,
    timestamps: Sequence[int | None] | None = None,
    metadata: Sequence[Mapping[str, str]] | None = None,
    lines: FileLines | None = None,
) -> str:
    """Columns as ``record-batch`` text; an all-empty optional column is left out.

    >>> text = encode_batch([7, 8], [b"hi", b""], [b"k", None])
    >>> text.encode("latin-1").hex(" ")[:35]
    '44 46 52 31 02 00 00 00 01 07 00 00'
    >>> decode_batch(text, "example").keys
    [b'k', None]
    """
    return frame_batch(positions, values, keys, timestamps, metadata, lines).decode("latin-1")


def frame_batch(
    positions: Sequence[int],
    values: Sequence[bytes],
    keys: Sequence[bytes | None] | None = None,
    timestamps: Sequence[int | None] | None = None,
    metadata: Sequence[Mapping[str, str]] | None = None,
    lines: FileLines | None = None,
    parsed: Sequence[Any] | None = None,
    *,
    parsed_blob: bytes | None = None,
) -> bytes:
    """Columns as ``record-batch`` bytes (what :func:`encode_batch` carries as text).

    ``lines`` (a file name, each record's line number) is the compact form of
    metadata that is exactly a file source's ``{"file": ..., "line": ...}``;
    give it or ``metadata``, not both. ``parsed`` (host to a Python guest only)
    holds each value as ``json.loads`` parsed it, or :data:`NO_PARSE`;
    ``parsed_blob`` is that column already marshalled (give one or neither).
    """
    count = len(values)
    if lines is not None and metadata is not None:
        raise ValueError("a batch carries a metadata column or a line column, not both")
    # Counted in C: a generator over 10k records cost a tenth of the encoding.
    if keys is not None and keys.count(None) == count:
        keys = None
    if timestamps is not None and timestamps.count(None) == count:
        timestamps = None
    if metadata is not None and metadata.count(_EMPTY_METADATA) == count:  # == any empty one
        metadata = None
    if parsed is not None and parsed.count(NO_PARSE) == count:
        parsed = None
    flags = (
        (_KEYS if keys is not None else 0)
        | (_TIMESTAMPS if timestamps is not None else 0)
        | (_METADATA if metadata is not None else 0)
        | (_LINES if lines is not None else 0)
        | (_PARSED if parsed is not None or parsed_blob is not None else 0)
    )
    try:
        # The values and keys go into the one final join: a batch is a megabyte,
        # and every intermediate copy of it costs page faults (measured).
        parts = [_HEADER.pack(MAGIC, count, flags), _pack("q", positions)]
        parts.append(_pack("I", map(len, values)))
        parts += values
        if keys is not None:
            parts.append(_pack("i", [-1 if k is None else len(k) for k in keys]))
            parts += [k for k in keys if k is not None]
        if timestamps is not None:
            parts.append(bytes([t is not None for t in timestamps]))
            parts.append(_pack("q", [0 if t is None else t for t in timestamps]))
        if metadata is not None:
            names = list(chain.from_iterable(metadata))
            texts = list(chain.from_iterable(map(_values, metadata)))
            parts.append(_pack("I", map(len, metadata)))
            name_lengths, name_blob = _utf8_column(names)
            text_lengths, text_blob = _utf8_column(texts)
            parts += (name_lengths, text_lengths, name_blob, text_blob)
        if lines is not None:
            file, numbers = lines
            name = file.encode()
            if len(numbers) != count:
                raise SerializationError(
                    f"a line column holds {len(numbers)} lines for {count} records"
                )
            parts += (_NAME_LENGTH.pack(len(name)), name, _pack("q", numbers))
        if parsed is not None:
            if len(parsed) != count:
                raise SerializationError(
                    f"a parsed column holds {len(parsed)} values for {count} records"
                )
            # One C call for the batch: the guest's one marshal.loads then costs
            # less than a third of parsing the values again.
            blob = marshal.dumps(list(parsed), _MARSHAL_VERSION)
            parts += (_NAME_LENGTH.pack(len(blob)), blob)
        elif parsed_blob is not None:
            parts += (_NAME_LENGTH.pack(len(parsed_blob)), parsed_blob)
    except (OverflowError, struct.error, UnicodeEncodeError, ValueError) as exc:
        raise SerializationError(f"a record does not fit the record-batch framing: {exc}") from exc
    return b"".join(parts)


_values = methodcaller("values")


def _utf8_column(texts: list[str]) -> tuple[bytes, bytes]:
    """Packed UTF-8 byte lengths and the joined bytes of ``texts``."""
    joined = "".join(texts)
    if joined.isascii():  # the usual case: one encode, lengths in characters are bytes
        return _pack("I", map(len, texts)), joined.encode("ascii")
    encoded = [text.encode() for text in texts]
    return _pack("I", map(len, encoded)), b"".join(encoded)


def _pack(code: str, numbers: Iterable[int]) -> bytes:
    packed = array(code, numbers)
    if _SWAP:
        packed.byteswap()
    return packed.tobytes()


def encode_index_list(indices: Sequence[int]) -> str:
    """Indices as ``index-list`` text.

    >>> encode_index_list([0, 2]).encode("latin-1").hex(" ")
    '02 00 00 00 00 00 00 00 02 00 00 00'
    """
    return (struct.pack("<I", len(indices)) + _pack("I", indices)).decode("latin-1")


# -- decoding (every length checked before it is used) ------------------------


class _Reader:
    """A cursor over framing bytes that refuses to read past their end."""

    __slots__ = ("data", "pos", "what")

    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.pos, self.what = data, 0, what

    def skip(self, size: int, field: str) -> int:
        """Step over ``size`` bytes, checked to be there; where they start."""
        if size > len(self.data) - self.pos:
            raise SerializationError(
                f"{self.what}: {field} needs {size:,} bytes at byte {self.pos:,} but only "
                f"{len(self.data) - self.pos:,} are left"
            )
        start = self.pos
        self.pos += size
        return start

    def take(self, size: int, field: str) -> bytes:
        start = self.skip(size, field)
        return self.data[start : self.pos]

    def numbers(self, code: str, count: int, field: str) -> list[int]:
        column = array(code)
        start = self.skip(count * column.itemsize, field)
        # A view, not a slice: the column is copied once, into the array.
        with memoryview(self.data) as view:
            column.frombytes(view[start : self.pos])
        if _SWAP:
            column.byteswap()
        return column.tolist()

    def slices(self, lengths: list[int], field: str) -> list[bytes]:
        return _slices(self.data, self.skip(sum(lengths), field), lengths)

    def finish(self) -> None:
        if self.pos != len(self.data):
            raise SerializationError(
                f"{self.what}: {len(self.data) - self.pos:,} bytes follow the last column"
            )


# Format codes "0s" to "4095s": a slice's code is a list lookup, not an int-to-text
# conversion (which was most of the cost of building a format).
_SLICE_CODES = [f"{length}s" for length in range(4096)]
_SLICES_PER_FORMAT = 4096  # bounds the format and compiled Struct (~32 bytes a code)


def _slices(data: bytes, start: int, lengths: list[int]) -> list[bytes]:
    """The byte strings of ``lengths`` (each >= 0) one after another from ``start``.

    One ``struct`` format of ``"<5s3s..."`` cuts a whole column in C, faster
    than slicing value by value in Python (which, in the guest, cost more than
    ``marshal.loads`` did for the whole batch before the framing).
    """
    values: list[bytes] = []
    for first in range(0, len(lengths), _SLICES_PER_FORMAT):
        part = lengths[first : first + _SLICES_PER_FORMAT]
        if len(part) == 1:
            values.append(data[start : start + part[0]])
        else:
            try:
                codes = "".join(itemgetter(*part)(_SLICE_CODES))
            except IndexError:  # a value of 4 KiB or more: its code is spelt out
                codes = "".join([f"{length}s" for length in part])
            values += struct.Struct("<" + codes).unpack_from(data, start)
        start += sum(part)
    return values


def _latin1_bytes(text: str | bytes, what: str) -> bytes:
    if isinstance(text, bytes):  # the sandbox process already made the text bytes
        return text
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise SerializationError(
            f"{what}: character {exc.object[exc.start]!r} at {exc.start} is above U+00FF, "
            "so the text does not carry bytes"
        ) from exc


def decode_batch(text: str | bytes, what: str, *, from_host: bool = False) -> RecordBatch:
    """A ``record-batch`` from text, checked against every rule of the framing.

    ``what`` names the framing in errors (``"the guest's records"``).
    ``from_host`` (the guest reading the host's batch, and nothing else) accepts
    the parsed column: ``marshal`` bytes, which only the host may write.
    """
    reader = _Reader(_latin1_bytes(text, what), what)
    magic, count, flags = _HEADER.unpack(reader.take(_HEADER.size, "the header"))
    if magic != MAGIC:
        raise SerializationError(f"{what}: starts with {magic!r}, not the {MAGIC!r} magic")
    known = _KNOWN_FLAGS | _PARSED if from_host else _KNOWN_FLAGS
    if flags & ~known:
        raise SerializationError(f"{what}: unknown flag bits {flags & ~known:#04x}")
    positions = reader.numbers("q", count, "the positions column")
    values = reader.slices(reader.numbers("I", count, "the value lengths"), "the values")
    keys: list[bytes | None] | None = None
    if flags & _KEYS:
        key_lengths = reader.numbers("i", count, "the key lengths")
        if any(length < -1 for length in key_lengths):
            raise SerializationError(f"{what}: a key length is below -1")
        present = [length >= 0 for length in key_lengths]
        blobs = iter(reader.slices(list(compress(key_lengths, present)), "the keys"))
        keys = [next(blobs) if has else None for has in present]
    timestamps: list[int | None] | None = None
    if flags & _TIMESTAMPS:
        present_bytes = reader.take(count, "the timestamp flags")
        if present_bytes.strip(b"\x00\x01"):
            raise SerializationError(f"{what}: a timestamp flag is neither 0 nor 1")
        stamps = reader.numbers("q", count, "the timestamps")
        if any(stamp for stamp, has in zip(stamps, present_bytes, strict=True) if not has):
            raise SerializationError(f"{what}: an absent timestamp is not 0")
        timestamps = [t if has else None for t, has in zip(stamps, present_bytes, strict=True)]
    metadata: list[dict[str, str]] | None = None
    if flags & _METADATA:
        if flags & _LINES:
            raise SerializationError(f"{what}: flags set both the metadata and the line column")
        metadata = _decode_metadata(reader, count)
    lines: FileLines | None = None
    if flags & _LINES:
        (size,) = _NAME_LENGTH.unpack(reader.take(4, "the file name's length"))
        name = _texts(reader, [size], "the file name")[0]
        lines = (name, reader.numbers("q", count, "the line numbers"))
    parsed: HostParses | None = None
    if flags & _PARSED:
        (size,) = _NAME_LENGTH.unpack(reader.take(4, "the parsed column's length"))
        parsed = HostParses(reader.take(size, "the parsed column"), count, what)
    reader.finish()
    return RecordBatch(positions, values, keys, timestamps, metadata, lines, parsed)


def _decode_metadata(reader: _Reader, count: int) -> list[dict[str, str]]:
    entry_counts = reader.numbers("I", count, "the metadata entry counts")
    entries = sum(entry_counts)
    name_lengths = reader.numbers("I", entries, "the metadata name lengths")
    text_lengths = reader.numbers("I", entries, "the metadata text lengths")
    uniform = bool(entries) and min(entry_counts) == max(entry_counts)
    per_record = entry_counts[0] if uniform else 0
    names, repeated = _names(reader, name_lengths, per_record)
    texts = _texts(reader, text_lengths, "the metadata texts")
    if repeated and per_record <= 2:
        # One source's records carry the same one or two names (file and line):
        # a dict display per record is faster than dict() over pairs.
        metadata = _same_names(names[:per_record], texts)
    else:
        pairs = iter(zip(names, texts, strict=True))
        metadata = [dict(islice(pairs, entry_count)) for entry_count in entry_counts]
    if sum(map(len, metadata)) != entries:
        raise SerializationError(f"{reader.what}: a record repeats a metadata name")
    return metadata


def _same_names(names: list[str], texts: list[str]) -> list[dict[str, str]]:
    column = iter(texts)
    if len(names) == 1:
        (only,) = names
        return [{only: text} for text in column]
    first, second = names
    return [{first: one, second: two} for one, two in zip(column, column, strict=True)]


def _names(reader: _Reader, lengths: list[int], per_record: int) -> tuple[list[str], bool]:
    """The names column, and whether it is the first record's names repeated.

    Records of one source carry the same names in the same order: that case is
    found with two C-level comparisons and decoded once, not name by name.
    """
    field = "the metadata names"
    if per_record:
        first = lengths[:per_record]
        records = len(lengths) // per_record
        if lengths == first * records:
            size = sum(first)
            blob = reader.take(size * records, field)
            if blob == blob[:size] * records:
                return _texts(_Reader(blob[:size], reader.what), first, field) * records, True
            return _texts(_Reader(blob, reader.what), lengths, field), False
    return _texts(reader, lengths, field), False


def _texts(reader: _Reader, lengths: list[int], field: str) -> list[str]:
    # Cut as bytes in C, then one C-level decode each: 20% faster than decoding
    # the whole column and slicing the text in a Python loop (when ASCII), and
    # the same strict UTF-8 check either way.
    raw = _slices(reader.data, reader.skip(sum(lengths), field), lengths)
    try:
        return list(map(bytes.decode, raw))
    except UnicodeDecodeError as exc:
        raise SerializationError(f"{reader.what}: metadata is not UTF-8 ({exc.reason})") from exc


def decode_index_list(text: str | bytes, what: str) -> list[int]:
    """An ``index-list`` from text (counts checked; ordering is the caller's rule)."""
    reader = _Reader(_latin1_bytes(text, what), what)
    (count,) = struct.unpack("<I", reader.take(4, "the count"))
    indices = reader.numbers("I", count, "the indices")
    reader.finish()
    return indices


# -- the host's and the guest's uses ------------------------------------------


def encode_request(records: Sequence[Record], *, parsed: bool = False) -> bytes:
    """Host side: a batch of records as ``record-batch`` bytes (positions = offsets).

    Bytes, not text: the sandbox process makes the Latin-1 text the export takes,
    off the host's main thread (and a str of high code points pickles slower).
    ``parsed`` (for a guest that asked for it) adds the parse each record holds
    for its first :meth:`~dataflare.Record.json`; the host keeps it for itself as
    the column just sent (see :func:`~._host_parses.park_parses`).
    """
    lines = line_column(records)
    parses = parses_to_send(records) if parsed else None
    blob = None if parses is None else marshal.dumps(parses, _MARSHAL_VERSION)
    framed = frame_batch(
        [r.offset for r in records],
        [r.value for r in records],
        [r.key for r in records],
        [r.timestamp for r in records],
        None if lines is not None else [r.metadata for r in records],
        lines,
        parsed_blob=blob,
    )
    if blob is not None:
        park_parses(records, blob)
    return framed


def line_column(records: Sequence[Record]) -> FileLines | None:
    """The records' metadata as a line column, when every one is a line of the same
    file whose metadata mapping was never made; else None.

    Such records (a file source's, and what a map made of them) cross as one file
    name and a column of numbers: no mapping is made on either side unless read.
    """
    if not records:
        return None
    # An unmade line's metadata slot holds its file's name (a mapping never equals it).
    # starmap over zip: the slot getters take a tuple, which zip reuses (see
    # _trusted_records._set_column).
    slots = list(starmap(_get_metadata, zip(records)))  # noqa: RUF058
    file = slots[0]
    if type(file) is not str or slots.count(file) != len(slots):
        return None
    return file, list(starmap(_get_line, zip(records)))  # noqa: RUF058


def records_of(batch: RecordBatch, offsets: list[int]) -> list[Record]:
    """A decoded batch's records with ``offsets``, built without the checked constructor
    (the decoder checked every column's types and ranges)."""
    lines = batch.lines
    return build_trusted_records(
        batch.values,
        batch.keys,
        batch.timestamps,
        batch.metadata,
        offsets,
        batch.parsed,
        file_lines=None if lines is None else ([lines[0]] * len(lines[1]), lines[1]),
    )


def decode_request(text: str, *, parses_now: bool = False) -> list[Record]:
    """Guest side: the host's batch as records (the framing is checked all the same);
    a record's first :meth:`~dataflare.Record.json` returns the host's parse, if sent.

    The parses are unmarshalled on the batch's first ``json()``, or here with
    ``parses_now`` (for a plugin known to read them: it saves each ``json()`` a step).
    """
    batch = decode_batch(text, "the batch", from_host=True)
    if parses_now and isinstance(batch.parsed, HostParses):
        batch = attrs.evolve(batch, parsed=batch.parsed.items())
    return records_of(batch, batch.positions)


def encode_records(outputs: Sequence[Record], sources: Sequence[int]) -> str:
    """Guest side: output records, each with the batch index of its input."""
    lines = line_column(outputs)
    return encode_batch(
        sources,
        [r.value for r in outputs],
        [r.key for r in outputs],
        [r.timestamp for r in outputs],
        None
        if lines is not None or not any(r.metadata for r in outputs)
        else [_plain_dict(r.metadata) for r in outputs],
        lines,
    )


def _plain_dict(metadata: Mapping[str, str]) -> Mapping[str, str]:
    # A record's metadata is a read-only view of a private dict: copying that
    # dict is faster than iterating the view name by name.
    if type(metadata) is MappingProxyType:
        return metadata.copy()
    return metadata


def decode_records(
    text: str | bytes, inputs: Sequence[Record], consumed: int
) -> tuple[list[Record], list[int]]:
    """Host side: a guest's outputs and their sources, checked rule by rule.

    Each output takes the offset of the input it came from: the guest never
    says where a record is in its stream.
    """
    what = "the guest's records"
    batch = decode_batch(text, what)
    sources = batch.positions
    if not _increasing(sources, 0, consumed, le):
        previous = 0
        for source in sources:  # name the first source that breaks the rule
            if not previous <= source < consumed:
                raise SerializationError(
                    f"{what}: source index {source} is out of order or not below {consumed}"
                )
            previous = source
    # The decoder fixes every field's type and range (bytes, i64, UTF-8 text with
    # distinct names: what Record's own checks would verify), so the records
    # are built without them; the offsets are the inputs' own.
    offsets = list(map(_offset, map(inputs.__getitem__, sources)))
    return records_of(batch, offsets), sources


_offset = attrgetter("offset")


def _increasing(numbers: list[int], low: int, high: int, order: Callable[[int, int], bool]) -> bool:
    """Whether ``numbers`` are within ``low <= n < high`` and each is in ``order`` with the
    next: compared in C, as a guest's thousands of indices are on every batch."""
    if not numbers:
        return True
    return low <= numbers[0] and numbers[-1] < high and all(map(order, numbers, numbers[1:]))


def encode_kept(kept: Sequence[int]) -> str:
    """Guest side: a filter's kept indices as an ``index-list``."""
    return encode_index_list(kept)


def decode_kept(text: str | bytes, consumed: int) -> list[int]:
    """Host side: a filter's kept indices, checked to be increasing and below ``consumed``."""
    kept = decode_index_list(text, "the guest's kept indices")
    if _increasing(kept, 0, consumed, lt):
        return kept
    previous = -1
    for index in kept:  # name the first index that breaks the rule
        if not previous < index < consumed:
            raise SerializationError(
                f"the guest's kept indices are not increasing indices below {consumed}: "
                f"found {index} after {previous}"
            )
        previous = index
    return kept


def encode_accumulator(accumulator: bytes | None) -> str | None:
    """Bytes (an aggregate's state) as Latin-1 text, or None."""
    return None if accumulator is None else accumulator.decode("latin-1")


def decode_accumulator(text: str | bytes) -> bytes:
    """Latin-1 text back to bytes; raises SerializationError on a wider character."""
    return _latin1_bytes(text, "the accumulator")
