"""A source blocked in a read never holds up a stop (no server needed here).

On a stop, sources that can be interrupted are; a reader still running after
the grace period is abandoned, so the main loop and ``join`` stop waiting.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from support.source_readers import source_readers

from dataflare import Record
from dataflare_host.connectors import Source, SourceBatch
from dataflare_host.pipeline._readers import ReadBatch, ReaderDone, SourceReaders


class BlockingSource(Source):
    """One batch, then a read that blocks until ``release`` is set (a locked table)."""

    Config = dict

    def __init__(self) -> None:
        super().__init__({}, {})
        self.release = threading.Event()
        self.blocked = threading.Event()
        self.reads = 0

    def connect(self, position: Any | None) -> None:
        """Nothing to open."""

    def read(self, max_records: int, timeout_s: float) -> SourceBatch | None:
        self.reads += 1
        if self.reads == 1:
            return SourceBatch([Record(b"first")], {"reads": 1})
        self.blocked.set()
        self.release.wait()
        return SourceBatch([Record(b"late")], {"reads": self.reads})


class InterruptibleSource(BlockingSource):
    """A blocking source whose read ``interrupt()`` ends (as the PostgreSQL source's)."""

    def __init__(self) -> None:
        super().__init__()
        self.interrupts = 0

    def interrupt(self) -> None:
        self.interrupts += 1
        self.release.set()


def drain(readers: SourceReaders, live: int, limit_s: float) -> list[ReadBatch | ReaderDone]:
    """What get() returns until ``live`` readers ended, or ``limit_s`` passed."""
    items: list[ReadBatch | ReaderDone] = []
    deadline = time.monotonic() + limit_s
    while live and time.monotonic() < deadline:
        item = readers.get(timeout=0.05)
        if item is not None:
            items.append(item)
            live -= isinstance(item, ReaderDone)
    return items


def test_a_reader_blocked_in_a_read_is_abandoned_after_the_grace_period(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The main loop gets the blocked reader's end once the grace period is over."""
    source = BlockingSource()
    readers, _, stop = source_readers({"stuck": source}, grace_s=0.3, queue_batches=4)
    readers.start()
    try:
        assert source.blocked.wait(5)
        stopped = time.monotonic()
        stop.set()
        items = drain(readers, live=1, limit_s=5)
        assert [type(item) for item in items] == [ReadBatch, ReaderDone]
        assert items[-1] == ReaderDone("stuck")
        assert 0.25 <= time.monotonic() - stopped < 2
        started = time.monotonic()
        readers.join(timeout=5)
        assert time.monotonic() - started < 0.5
        assert not readers.all_exhausted
        assert "source 'stuck' did not stop within 0.3 s" in caplog.text
        # What the abandoned reader reads afterwards is dropped, its end not reported again.
        source.release.set()
        assert drain(readers, live=1, limit_s=0.5) == []
    finally:
        source.release.set()


def test_join_after_a_failure_does_not_wait_past_the_grace_period() -> None:
    """A failed run's join waits for a blocked reader no longer than the grace period."""
    source = BlockingSource()
    readers, _, stop = source_readers({"stuck": source}, grace_s=0.3, queue_batches=4)
    readers.start()
    try:
        assert source.blocked.wait(5)
        stop.set()
        started = time.monotonic()
        readers.join(timeout=5)
        assert time.monotonic() - started < 1
    finally:
        source.release.set()


def test_interruptible_sources_are_interrupted_on_a_stop() -> None:
    """A stop interrupts the blocked read at once: its reader ends on its own, well in time."""
    source = InterruptibleSource()
    other = BlockingSource()
    readers, _, stop = source_readers({"pg": source, "other": other}, grace_s=30, queue_batches=4)
    readers.start()
    try:
        assert source.blocked.wait(5)
        assert other.blocked.wait(5)
        started = time.monotonic()
        stop.set()
        items = drain(readers, live=1, limit_s=5)
        assert time.monotonic() - started < 1
        assert items[-1] == ReaderDone("pg")
        assert source.interrupts >= 1
    finally:
        source.release.set()
        other.release.set()
