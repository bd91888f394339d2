"""The source readers' fast path gives exactly what the slow one does.

- Reading sources inline (no reader thread, :class:`ReadsInline`) gives the
  same batches, ends and errors as reader threads do.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from dataflare import Record
from dataflare_host.connectors import FileSource, Source, SourceBatch
from dataflare_host.pipeline._config import BatchSettings
from dataflare_host.pipeline._readers import ReadBatch, ReaderDone, ReadsInline, SourceReaders
from dataflare_host.pipeline._stats import PipelineStats, StageStats

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
