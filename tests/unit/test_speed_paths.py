"""The file source's and the source readers' fast paths give exactly what the slow ones do.

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
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataflare import Record
from dataflare_host.connectors import (
    FileSource,
    FileSourceConfig,
    Source,
    SourceBatch,
    _file_readers,
)
from dataflare_host.pipeline._config import BatchSettings
from dataflare_host.pipeline._readers import ReadBatch, ReaderDone, ReadsInline, SourceReaders
from dataflare_host.pipeline._stats import PipelineStats, StageStats

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


# -- _Lines == iterating the file -------------------------------------------------


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


def _readers(sources: dict[str, Source]) -> tuple[SourceReaders, PipelineStats, threading.Event]:
    stop = threading.Event()
    stats = PipelineStats(StageStats(name, "source", "test") for name in sources)
    readers = SourceReaders(
        list(sources.items()),
        stats,
        BatchSettings(size=10, linger_ms=10, queue_batches=2),
        stop,
        threading.Event(),
        stop_grace_s=1,
    )
    return readers, stats, stop


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
        readers, stats, _ = _readers({"s": source})
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
    readers, _, _ = _readers(sources)
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
    readers, _, _ = _readers(sources)
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
    readers, _, stop = _readers({"s": source})
    readers.start()
    first = readers.get(timeout=0.05)
    assert isinstance(first, ReadBatch)
    stop.set()
    assert readers.get(timeout=0.05) == ReaderDone("s")
    assert not readers.all_exhausted
    assert source.reads == 1  # nothing read after the stop


def test_the_file_source_reads_inline() -> None:
    assert isinstance(FileSource.__new__(FileSource), ReadsInline)
