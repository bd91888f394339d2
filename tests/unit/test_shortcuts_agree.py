"""Each shortcut taken for speed gives exactly what the plain path it replaces gives.

- ``loads_json`` (the guest's ``json.loads``, the file source's JSON check)
  returns the same value and raises the same exception type and message as
  ``json.loads`` on generated JSON and non-JSON.
- ``Record.evolve`` keeps the metadata mapping, checks what changed like
  ``Record()`` does, and gives a record equal to the checked constructor's.
- The file source's records equal the ones the checked constructor builds,
  and its errors keep their wording (file, line, value).
- Parse once: a JSONL source's check hands each line's parse to the record's
  first ``json()`` (no second parse), with the same records, values and errors
  as without the check, inline and in deferred (worker) batches alike.
- The host's ``parse_json`` (orjson where it agrees) equals ``json.loads``, and
  ``parse_json_lines`` (one digit-run check per batch) equals it value by value.
- ``ChunkedLines`` (a JSONL or lines file read a megabyte at a time and split with
  ``bytes.split``) gives the lines iterating the file gives, line ends
  stripped and a JSONL byte-order mark dropped, whatever the chunk size.
- The file source's bulk path (a slice of lines without blank lines or
  key/timestamp fields, JSON checked in one pass) gives the same batches,
  records, positions and errors (type and wording: file, line, reason) as its
  line-by-line path, also across files and when resuming from a position.
- Reading sources inline (no reader thread, :class:`ReadsInline`) gives the
  same batches, ends and errors as reader threads do.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from support.file_sources import read_all, read_then_resume
from support.json_values import comparable_json_value
from support.source_readers import source_readers

from dataflare import PluginIOError, Record, SerializationError
from dataflare.runtime import loads_json
from dataflare_host._json import parse_json, parse_json_lines
from dataflare_host.connectors import (
    FileSink,
    FileSinkConfig,
    FileSource,
    FileSourceConfig,
    Source,
    SourceBatch,
    _file_readers,
)
from dataflare_host.pipeline._readers import ReadBatch, ReaderDone, ReadsInline, SourceReaders

# -- loads_json == json.loads ---------------------------------------------------

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
_whitespace = st.text(alphabet=" \t\r\n", max_size=3)


def _json_outcome(call: Any, value: Any) -> tuple[str, Any]:
    try:
        result = call(value)
    except Exception as exc:  # noqa: BLE001 - comparing whatever both raise
        return ("raised", (type(exc), str(exc)))
    return ("returned", comparable_json_value(result))


def _same(value: str | bytes | bytearray) -> None:
    assert _json_outcome(loads_json, value) == _json_outcome(json.loads, value)


@given(_json_values, _whitespace, _whitespace, st.booleans(), st.booleans())
def test_loads_json_equals_json_loads_on_json(
    value: Any, before: str, after: str, as_bytes: bool, ascii_only: bool
) -> None:
    text = before + json.dumps(value, ensure_ascii=ascii_only) + after
    _same(text.encode() if as_bytes else text)


@given(st.binary(max_size=40))
@example(b"")
@example(b"\xef\xbb\xbf{}")
@example(b"\xff\xfe1\x00")
@example(b"\x001")
@example(b"1\x00")
@example(b'"\xed\xa0\x80"')
@example(b"[1] x")
@example(b"[1,]")
@example(b"NaN")
@example(b"-Infinity ")
@example(b" \n")
def test_loads_json_equals_json_loads_on_any_bytes(data: bytes) -> None:
    _same(data)
    _same(bytearray(data))


@given(st.text(max_size=40))
@example("\ufeff[]")
@example("nan")
@example('{"a": 1}}')
@example("[" * 100_000)
def test_loads_json_equals_json_loads_on_any_text(text: str) -> None:
    _same(text)


@given(_json_values, st.sampled_from(["]", "}", ",", " x", "\x00", "'", '"']))
def test_loads_json_equals_json_loads_on_broken_json(value: Any, junk: str) -> None:
    text = json.dumps(value)
    for broken in (text + junk, junk + text, text[: len(text) // 2]):
        _same(broken)
        _same(broken.encode())


# -- the host's parse_json (orjson where it agrees) == json.loads ------------------------


def _same_parse(data: bytes) -> None:
    assert _json_outcome(parse_json, data) == _json_outcome(json.loads, data)


@given(_json_values, _whitespace, _whitespace, st.booleans())
@example(12345678901234567890, "", "", True)
@example(-(2**63) - 1, "", "", True)
@example(2**64, "", "", False)
@example([1e400, -1e-400, 0.1, 2.5e-308], "", "", True)
def test_parse_json_equals_json_loads_on_json(
    value: Any, before: str, after: str, ascii_only: bool
) -> None:
    """On JSON: the same value as json.loads (big integers, floats, text, nesting)."""
    _same_parse((before + json.dumps(value, ensure_ascii=ascii_only) + after).encode())


@given(st.binary(max_size=40))
@example(b"\xef\xbb\xbf{}")
@example(b'"\xed\xa0\x80"')
@example(b'"\\ud800"')
@example(b"1e400")
@example(b"[NaN, -Infinity]")
@example(b"123456789012345678901234567890")
@example(b'{"a": 1, "a": 2}')
@example(b'"a\x01"')
@example(b"[" * 100_000)
def test_parse_json_equals_json_loads_on_any_bytes(data: bytes) -> None:
    """On any bytes: the same value, or the same exception type and message."""
    _same_parse(data)


@given(_json_values, st.sampled_from(["]", "}", ",", " x", "\x00", "'", '"']))
def test_parse_json_equals_json_loads_on_broken_json(value: Any, junk: str) -> None:
    text = json.dumps(value)
    for broken in (text + junk, junk + text, text[: len(text) // 2]):
        _same_parse(broken.encode())


_lines_of_json = st.lists(
    st.one_of(
        _json_values.map(lambda value: json.dumps(value).encode()),
        st.integers().map(lambda n: str(n).encode()),  # runs of 19 digits and more
        st.binary(max_size=12),  # mostly not JSON
    ),
    max_size=6,
)


@given(_lines_of_json)
@example([b"1", b"1234567890123456789", b"2"])
@example([b"123456789", b"0123456789"])  # a run only if the newline were a digit
@example([b"[1]", b"[1", b"{}"])
def test_parse_json_lines_equals_parse_json_value_by_value(values: list[bytes]) -> None:
    """The batch parse: each value's parse, or the first failing value's exception."""

    def one_by_one(batch: list[bytes]) -> list[Any]:
        return [parse_json(value) for value in batch]

    assert _json_outcome(parse_json_lines, values) == _json_outcome(one_by_one, values)
    if "raised" not in _json_outcome(one_by_one, values)[0]:
        made = parse_json_lines(values)
        # 19+ digits come exact (an int, never orjson's float), as json.loads gives them.
        assert [type(v) for v in made] == [type(json.loads(v)) for v in values]


def test_loads_json_keeps_json_loads_keywords_and_types() -> None:
    assert loads_json("[1.5]", parse_float=str) == ["1.5"]
    assert loads_json('{"a": 1}', object_pairs_hook=list) == [("a", 1)]
    with pytest.raises(TypeError) as fast:
        loads_json(12)  # type: ignore[arg-type]
    with pytest.raises(TypeError) as slow:
        json.loads(12)  # type: ignore[arg-type]
    assert str(fast.value) == str(slow.value)


# -- Record.evolve ------------------------------------------------------------------


def test_evolve_keeps_the_metadata_mapping_and_equals_the_constructor() -> None:
    record = Record(b"a", b"k", 5, {"file": "f.jsonl", "line": "3"}, 7)
    evolved = record.evolve(value="b")
    assert evolved.metadata is record.metadata  # not copied and frozen again
    assert evolved == Record(b"b", b"k", 5, {"file": "f.jsonl", "line": "3"}, 7)
    assert hash(evolved) == hash(Record(b"b", b"k", 5, {"file": "f.jsonl", "line": "3"}, 7))
    assert record.evolve(offset=9, key=None).key is None
    assert record.evolve(metadata={"x": "y"}).metadata == {"x": "y"}


@pytest.mark.parametrize(
    "changes",
    [
        {"value": 1},
        {"value": None},
        {"key": 3},
        {"timestamp": 1 << 64},
        {"timestamp": True},
        {"offset": "1"},
        {"value": b"ok", "offset": -(1 << 64)},
        {"metadata": {"a": 1}},
        {"valeu": b"x"},
    ],
)
def test_evolve_refuses_what_the_constructor_refuses_with_its_words(
    changes: dict[str, Any],
) -> None:
    record = Record(b"a", metadata={"m": "n"})
    with pytest.raises(TypeError) as fast:
        record.evolve(**changes)
    fields = {
        "value": record.value,
        "key": record.key,
        "timestamp": record.timestamp,
        "metadata": record.metadata,
        "offset": record.offset,
        **changes,
    }
    with pytest.raises(TypeError) as checked:
        Record(**fields)
    assert str(fast.value) == str(checked.value)


# -- the file source ------------------------------------------------------------------


def test_file_source_records_equal_the_checked_constructors(tmp_path: Path) -> None:
    lines = ['{"u": "a", "ts": 10}', "", '{"u": 2}', '{"ts": "11"}', "[1]", '{"u": null}']
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode() + b"\r\n")
    got = read_all(path, 3, key_field="u", timestamp_field="ts")
    expected = [
        Record(b'{"u": "a", "ts": 10}', b"a", 10, {"file": "in.jsonl", "line": "1"}, 0),
        Record(b'{"u": 2}', b"2", None, {"file": "in.jsonl", "line": "3"}, 1),
        Record(b'{"ts": "11"}', None, 11, {"file": "in.jsonl", "line": "4"}, 2),
        Record(b"[1]", None, None, {"file": "in.jsonl", "line": "5"}, 3),
        Record(b'{"u": null}', None, None, {"file": "in.jsonl", "line": "6"}, 4),
    ]
    assert got == expected
    assert all(type(r.metadata) is type(e.metadata) for r, e in zip(got, expected, strict=True))


def test_file_source_json_error_names_file_line_and_json_loads_reason(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2} x\n', encoding="utf-8")
    with pytest.raises(SerializationError) as caught:
        read_all(path, 3)
    try:
        json.loads(b'{"a": 2} x')
    except ValueError as exc:
        reason = str(exc)
    assert str(caught.value) == (
        f"{path}:3: not valid JSON ({reason}); fix the line or set validate: false to pass "
        "it through as bytes"
    )


def test_file_source_out_of_range_timestamp_is_refused_like_the_constructor(
    tmp_path: Path,
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(f'{{"ts": {1 << 70}}}\n', encoding="utf-8")
    with pytest.raises(TypeError) as caught:
        read_all(path, 3, timestamp_field="ts")
    with pytest.raises(TypeError) as checked:
        Record(b"", timestamp=1 << 70)
    assert str(caught.value) == str(checked.value)


def test_file_source_position_counts_every_line_read(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": 1}\n\n\n{"a": 2}\n{"a": 3}\n', encoding="utf-8")
    first, rest = read_then_resume(path, 2)
    assert [r.offset for r in first.records] == [0, 1]
    assert (first.position["line"], first.position["offset"]) == (4, 2)
    assert [(r.value, r.offset, r.metadata["line"]) for r in rest.records] == [
        (b'{"a": 3}', 2, "5")
    ]


def test_file_sink_refuses_a_value_with_a_newline_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    sink = FileSink(FileSinkConfig(str(path), fsync=False), {})
    sink.connect()
    try:
        sink.write([Record(b"a", offset=1), Record(b"b\nc", offset=2), Record(b"d\n", offset=3)])
    except PluginIOError as exc:
        message = str(exc)
    else:
        raise AssertionError("a newline inside a value was written")
    sink.write([Record(b"x", offset=4), Record(b"y", offset=5)])
    sink.close()
    assert message == (
        f"file sink {path}: record at offset 2 holds a newline, which would split it in "
        "jsonl output"
    )
    assert path.read_bytes() == b"x\ny\n"


_BOM = b"\xef\xbb\xbf"
_CHUNKS = st.sampled_from([1, 2, 3, 7, 64, 1 << 20])

# Lines that matter to a JSONL source: JSON, blank and whitespace-only lines
# (skipped), JSON with surrounding whitespace, not-JSON, a BOM inside a line,
# NULs and bytes json.loads reads as another encoding, bad UTF-8, key and
# timestamp fields of every kind; and anything else.
_line = st.one_of(
    st.sampled_from(
        [
            b'{"a": 1}',
            b'{"u": "k", "ts": 5}',
            b'{"u": 1, "ts": "bad"}',
            b'{"u": null, "ts": 7}',
            b"[1, 2]",
            b'"s"',
            b"NaN",
            b"",
            b"  ",
            b"\t",
            b" \x0b",
            b"\x0c",
            b'{"a": ',
            b"x",
            b"1 2",
            b'  {"a": 2}  ',
            b'{"a": 1}\r',
            b"\r",
            _BOM + b"{}",
            b"\x00",
            b"1\x00",
            b"\xff\xfe1\x00",
            b'"\xed\xa0\x80"',
            b"\xff",
            b'"\xc3\xa9"',
        ]
    ),
    st.binary(max_size=6),
)


def _file_bytes(lines: list[bytes], *, bom: bool, crlf: bool, last_newline: bool) -> bytes:
    end = b"\r\n" if crlf else b"\n"
    data = end.join(lines) + (end if last_newline and lines else b"")
    return (_BOM if bom else b"") + data


# -- ChunkedLines == iterating the file -------------------------------------------------


def _iterated(data: bytes, strip_bom: bool) -> list[bytes]:
    lines = [line.rstrip(b"\r\n") for line in io.BytesIO(data)]
    if strip_bom and lines:
        lines[0] = lines[0].removeprefix(_BOM)
    return lines


@given(
    st.lists(_line, max_size=20),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    _CHUNKS,
    st.lists(st.tuples(st.booleans(), st.integers(0, 5)), max_size=12),
)
def test_lines_equal_iterating_the_file(
    lines: list[bytes],
    bom: bool,
    crlf: bool,
    last_newline: bool,
    strip_bom: bool,
    chunk: int,
    steps: list[tuple[bool, int]],
) -> None:
    data = _file_bytes(lines, bom=bom, crlf=crlf, last_newline=last_newline)
    expected = _iterated(data, strip_bom)
    original = _file_readers._READ_CHUNK
    _file_readers._READ_CHUNK = chunk
    try:
        reader = _file_readers.ChunkedLines(io.BytesIO(data), strip_bom=strip_bom)
        at = 0
        for skipping, count in [*steps, (False, len(expected) + 1)]:
            if skipping:
                reader.skip(count)
            else:
                assert reader.take(count) == expected[at : at + count]
            at = min(len(expected), at + count)
            assert reader.number == at
    finally:
        _file_readers._READ_CHUNK = original


# -- the file source's bulk path == its line-by-line path --------------------------


def _outcome(
    path: Path, config: dict[str, Any], batch: int, resume_after: int
) -> list[tuple[Any, ...]]:
    """Every read's batch (records in full, position), its end, or its error; after
    ``resume_after`` reads, a new source resumes from the last position."""
    outcome: list[tuple[Any, ...]] = []
    source = FileSource(FileSourceConfig(str(path), **config), {})
    position = None
    try:
        source.connect(None)
        for reads in range(100):
            if reads == resume_after:
                source.close()
                source = FileSource(FileSourceConfig(str(path), **config), {})
                source.connect(position)
            got = source.read(batch, 0.01)
            if got is None:
                outcome.append(("end",))
                break
            position = got.position
            records = [
                (r.value, r.key, r.timestamp, dict(r.metadata), r.offset, type(r.metadata))
                for r in got.records
            ]
            outcome.append(("batch", records, got.position))
    except Exception as exc:  # noqa: BLE001 - comparing whatever both raise
        outcome.append(("error", type(exc), str(exc)))
    finally:
        source.close()
    return outcome


@contextlib.contextmanager
def line_by_line() -> Iterator[None]:
    """Within the block, the file source reads every slice line by line."""

    def slow_only(self: FileSource, columns: Any, taken: list[bytes], first: int) -> bool:
        return False

    bulk = FileSource._add_slice
    FileSource._add_slice = slow_only  # type: ignore[method-assign]
    try:
        yield
    finally:
        FileSource._add_slice = bulk  # type: ignore[method-assign]


@given(
    files=st.lists(st.lists(_line, max_size=12), min_size=1, max_size=3),
    bom=st.booleans(),
    crlf=st.booleans(),
    file_format=st.sampled_from(["jsonl", "lines"]),
    validate=st.booleans(),
    fields=st.booleans(),
    batch=st.integers(1, 6),
    resume_after=st.integers(0, 4),
    chunk=_CHUNKS,
)
def test_bulk_lines_equal_line_by_line(
    tmp_path_factory: pytest.TempPathFactory,
    files: list[list[bytes]],
    bom: bool,
    crlf: bool,
    file_format: str,
    validate: bool,
    fields: bool,
    batch: int,
    resume_after: int,
    chunk: int,
) -> None:
    folder = tmp_path_factory.mktemp("in")
    for index, lines in enumerate(files):
        data = _file_bytes(lines, bom=bom and index == 0, crlf=crlf, last_newline=index != 1)
        (folder / f"part-{index}.txt").write_bytes(data)
    path = folder if len(files) > 1 else folder / "part-0.txt"
    config: dict[str, Any] = {"format": file_format, "validate": validate}
    if fields:
        config.update(key_field="u", timestamp_field="ts")
    original = _file_readers._READ_CHUNK
    _file_readers._READ_CHUNK = chunk
    try:
        fast = _outcome(path, config, batch, resume_after)
        with line_by_line():
            slow = _outcome(path, config, batch, resume_after)
    finally:
        _file_readers._READ_CHUNK = original
    assert fast == slow


def test_bulk_path_is_taken_and_a_bad_line_is_worded_as_line_by_line(tmp_path: Path) -> None:
    """Big clean slices go in bulk; a bad line in one is reported with its file and line."""
    lines = [b'{"n": %d}' % i for i in range(2_500)]
    lines[1_700] = b'{"n": 1700'
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    calls: list[bool] = []
    bulk = FileSource._add_slice

    def counted(self: FileSource, columns: Any, taken: list[bytes], first: int) -> bool:
        added = bulk(self, columns, taken, first)
        calls.append(added)
        return added

    FileSource._add_slice = counted  # type: ignore[method-assign]
    try:
        fast = _outcome(path, {}, 1_000, -1)
    finally:
        FileSource._add_slice = bulk  # type: ignore[method-assign]
    with line_by_line():
        slow = _outcome(path, {}, 1_000, -1)
    assert fast == slow
    assert calls == [True, False]  # the first batch in bulk; the second, holding line 1701, not
    assert fast[-1][0] == "error"
    assert fast[-1][2].startswith(f"{path}:1701: not valid JSON (Expecting ',' delimiter")


# -- inline readers == reader threads ----------------------------------------------


class ListSource(Source):
    """Batches from a list; ``fail_at`` raises on that read; inline when ``inline``."""

    Config = dict

    def __init__(self, batches: list[list[bytes]], *, inline: bool, fail_at: int = -1) -> None:
        super().__init__({}, {})
        self.batches = batches
        self.inline = inline
        self.fail_at = fail_at
        self.reads = 0

    def connect(self, position: Any | None) -> None:
        """Nothing to open."""

    def read(self, max_records: int, timeout_s: float) -> SourceBatch | None:
        self.reads += 1
        if self.reads - 1 == self.fail_at:
            raise OSError("the disk went away")
        if self.reads > len(self.batches):
            return None
        values = self.batches[self.reads - 1]
        return SourceBatch([Record(v) for v in values], self.reads)

    def reads_inline(self) -> bool:
        return self.inline


def _drain(readers: SourceReaders) -> list[ReadBatch | ReaderDone]:
    readers.start()
    items: list[ReadBatch | ReaderDone] = []
    live = len(readers)
    while live:
        item = readers.get(timeout=0.05)
        if item is not None:
            items.append(item)
            live -= isinstance(item, ReaderDone)
    readers.join(timeout=5)
    return items


def _shown(items: list[ReadBatch | ReaderDone]) -> list[tuple[Any, ...]]:
    shown: list[tuple[Any, ...]] = []
    for item in items:
        if isinstance(item, ReadBatch):
            values = [r.value for r in item.batch.records]
            shown.append(("batch", item.source, values, item.batch.position))
        else:
            error = None if item.error is None else (type(item.error), str(item.error))
            shown.append(("done", item.source, error))
    return shown


@pytest.mark.parametrize("fail_at", [-1, 0, 2])
def test_inline_reading_equals_a_reader_thread(fail_at: int) -> None:
    batches = [[b"a", b"b"], [], [b"c"], [b"d", b"e", b"f"]]
    got = {}
    for inline in (True, False):
        source = ListSource(batches, inline=inline, fail_at=fail_at)
        readers, stats, _ = source_readers({"s": source})
        assert readers.inline is inline
        items = _drain(readers)
        got[inline] = (_shown(items), readers.all_exhausted, stats["s"].records_out)
    assert got[True] == got[False]
    if fail_at == -1:
        assert got[True][1] is True
        assert got[True][2] == 6


def test_inline_reading_takes_sources_in_turn_and_starts_no_thread() -> None:
    sources: dict[str, Source] = {
        "one": ListSource([[b"1a"], [b"1b"], [b"1c"]], inline=True),
        "two": ListSource([[b"2a"]], inline=True),
    }
    readers, _, _ = source_readers(sources)
    before = threading.active_count()
    readers.start()
    assert threading.active_count() == before
    assert _shown(_drain(readers)) == [
        ("batch", "one", [b"1a"], 1),
        ("batch", "two", [b"2a"], 1),
        ("batch", "one", [b"1b"], 2),
        ("done", "two", None),
        ("batch", "one", [b"1c"], 3),
        ("done", "one", None),
    ]
    assert readers.all_exhausted


def test_one_source_that_is_not_inline_puts_every_source_on_threads() -> None:
    sources: dict[str, Source] = {
        "file": ListSource([[b"x"]], inline=True),
        "stream": ListSource([[b"y"]], inline=False),
    }
    readers, _, _ = source_readers(sources)
    assert not readers.inline
    items = _drain(readers)
    assert sorted(map(str, _shown(items))) == sorted(
        map(
            str,
            [
                ("batch", "file", [b"x"], 1),
                ("done", "file", None),
                ("batch", "stream", [b"y"], 1),
                ("done", "stream", None),
            ],
        )
    )


def test_a_stop_ends_inline_sources_not_yet_exhausted() -> None:
    source = ListSource([[b"a"], [b"b"]], inline=True)
    readers, _, stop = source_readers({"s": source})
    readers.start()
    first = readers.get(timeout=0.05)
    assert isinstance(first, ReadBatch)
    stop.set()
    assert readers.get(timeout=0.05) == ReaderDone("s")
    assert not readers.all_exhausted
    assert source.reads == 1  # nothing read after the stop


def test_the_file_source_reads_inline() -> None:
    assert isinstance(FileSource.__new__(FileSource), ReadsInline)


# -- parse once: the source's check hands its parse to json() ----------------------------

_LINES = st.lists(
    st.one_of(
        st.dictionaries(st.text(max_size=6), st.integers() | st.text(max_size=6), max_size=4),
        st.lists(st.integers(), max_size=3),
    ).map(lambda document: json.dumps(document, ensure_ascii=False)),
    min_size=1,
    max_size=12,
)


@given(lines=_LINES, blank_every=st.integers(min_value=0, max_value=4))
def test_checked_lines_read_as_the_unchecked_ones_and_parse_the_same(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str], blank_every: int
) -> None:
    """The fast path (validate: the source's parse kept for json()) gives the same records
    as the slow one (no check, json() parses), and every json() equals json.loads."""
    path = tmp_path_factory.mktemp("parse-once") / "in.jsonl"
    shown = [
        line
        for i, line in enumerate(lines)
        for line in ([line, ""] if blank_every and i % blank_every == 0 else [line])
    ]
    path.write_text("\n".join(shown) + "\n", encoding="utf-8")
    checked = read_all(path)
    unchecked = read_all(path, validate=False)
    assert checked == unchecked == read_all(path, defer=True)
    for fast, slow in zip(checked, unchecked, strict=True):
        expected = json.loads(slow.value)
        assert fast.json() == slow.json() == expected
        assert fast.json() == expected  # the second call parses again


def test_a_checked_line_is_parsed_once_for_its_first_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The source's check is the only parse a plugin's first record.json() costs."""
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": 1}\n\n{"a": [2]}\n', encoding="utf-8")
    records = read_all(path) + read_all(path, defer=True)
    calls: list[bytes] = []
    real = json.loads
    monkeypatch.setattr(json, "loads", lambda v: calls.append(v) or real(v))
    assert [r.json() for r in records] == [{"a": 1}, {"a": [2]}] * 2
    assert calls == []
    assert records[1].json() == {"a": [2]}
    assert calls == [b'{"a": [2]}']


def test_a_malformed_line_among_checked_ones_still_names_its_file_and_line(tmp_path: Path) -> None:
    """Keeping the parses changes no error: the bad line of a slice is named as before."""
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": \n{"a": 3}\n', encoding="utf-8")
    with pytest.raises(SerializationError, match=rf"^{path}:3: not valid JSON \("):
        read_all(path)
