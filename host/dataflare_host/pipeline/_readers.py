"""Source reader threads: one per source, putting read batches on one bounded queue.

The queue is the backpressure: when the main loop (a slow sink) falls behind,
it fills and the readers block, so memory stays flat whatever the sources hold.

Stopping never waits on a source: once the run stops (or fails), a watcher
thread calls ``interrupt()`` on every source that has one and is still being
read (the PostgreSQL source cancels its running query), and a reader that has
not ended ``stop_grace_s`` seconds after the stop is abandoned: :meth:`SourceReaders.get`
reports it as ended and :meth:`SourceReaders.join` no longer waits for it. An
abandoned reader's thread is a daemon; what it still reads is dropped, and
since its position was never checkpointed the next run reads it again.

When every source reads without waiting for data (:class:`ReadsInline`: local
files), there are no threads at all: :meth:`SourceReaders.get` reads the next
batch in the caller's thread. A reader thread would only take turns with the
main loop for the GIL (no overlap, a switch every few milliseconds, measured
12% slower than the same run pinned to one core); the batches, their order per
source, the counts and the errors are the same either way.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import attrs

from dataflare_host.connectors import Source, SourceBatch
from dataflare_host.pipeline._config import BatchSettings
from dataflare_host.pipeline._stats import PipelineStats, StageStats

__all__ = ["Interruptible", "ReadBatch", "ReaderDone", "ReadsInline", "SourceReaders"]

log = logging.getLogger("dataflare.pipeline")

_PUT_RETRY_S = 0.1
_WATCH_S = 0.05
"""How often the watcher looks for a stop (and how soon after it it interrupts)."""
_INTERRUPT_RETRY_S = 0.25
"""How often a reader still running after the stop is interrupted again (a
cancel that reached the server just before the reader's next query is lost)."""
STOP_GRACE_S = 2.0
"""How long after a stop the pipeline waits for a reader before abandoning it."""


@runtime_checkable
class Interruptible(Protocol):
    """A source whose blocking read another thread can end (the pipeline is stopping)."""

    def interrupt(self) -> None:
        """End a read in progress soon, from any thread; later reads return no records."""


@runtime_checkable
class ReadsInline(Protocol):
    """A source whose reads never wait for data to arrive (a local file)."""

    def reads_inline(self) -> bool:
        """True when :meth:`Source.read` returns at once, whatever its timeout: the
        pipeline's main loop may then read it itself, with no reader thread."""


@attrs.frozen
class ReadBatch:
    """A batch a reader read from the source with id ``source``."""

    source: str
    batch: SourceBatch


@attrs.frozen
class ReaderDone:
    """The reader of source ``source`` ended: exhausted, stopped, or on ``error``."""

    source: str
    error: BaseException | None = None


class SourceReaders:
    """The reader threads of one run, the queue they fill, and which sources ran dry.

    ``sources`` pairs each source's id with its connector, in config order.
    Readers stop reading once ``stop`` is set; once ``failed`` is set they also
    stop waiting for room on the queue, since nobody will drain it any more.
    After either, sources that are :class:`Interruptible` are interrupted, and
    readers still running ``stop_grace_s`` seconds later are abandoned (see the
    module docstring), so that a source blocked in a read never holds up a stop.

    When every source :class:`ReadsInline`, no thread is started and
    :meth:`get` reads the sources in turn itself, one batch per call.
    """

    def __init__(
        self,
        sources: Sequence[tuple[str, Source]],
        stats: PipelineStats,
        batch: BatchSettings,
        stop: threading.Event,
        failed: threading.Event,
        *,
        stop_grace_s: float = STOP_GRACE_S,
    ) -> None:
        self._stats = stats
        self._size = batch.size
        self._linger = batch.linger_ms / 1000
        self._stop = stop
        self._failed = failed
        self._grace = stop_grace_s
        self._queue: queue.Queue[ReadBatch | ReaderDone] = queue.Queue(maxsize=batch.queue_batches)
        self._exhausted: set[str] = set()
        self._sources = list(sources)
        self._inline = bool(self._sources) and all(
            isinstance(source, ReadsInline) and source.reads_inline() for _, source in sources
        )
        self._turn = 0  # inline: the index of the source read next
        self._threads = [
            threading.Thread(
                target=self._read,
                args=(source_id, source),
                daemon=True,
                name=f"dataflare-source-{source_id}",
            )
            for source_id, source in ([] if self._inline else sources)
        ]
        # ``_ended``: readers whose end is reported (queued, or abandoned by
        # get()); each is reported once, or the main loop would count it twice.
        self._lock = threading.Lock()
        self._ended: set[str] = set()
        self._abandoned: set[str] = set()
        self._stopping_since: float | None = None
        self._watcher = threading.Thread(
            target=self._watch, daemon=True, name="dataflare-source-stopper"
        )

    def __len__(self) -> int:
        """How many readers there are: one per source."""
        return len(self._sources)

    @property
    def inline(self) -> bool:
        """Whether :meth:`get` reads the sources itself (no reader threads)."""
        return self._inline

    def start(self) -> None:
        """Start every reader thread, and the watcher that interrupts them on a stop."""
        if self._inline:
            return
        for thread in self._threads:
            thread.start()
        self._watcher.start()

    def get(self, timeout: float) -> ReadBatch | ReaderDone | None:
        """The next batch or reader end, or None when none came within ``timeout`` seconds.

        Once a reader has not ended ``stop_grace_s`` seconds after the stop, and
        nothing else is queued, its end is reported here (it is abandoned).
        """
        if self._inline:
            return self._read_inline(timeout)
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return self._abandon_one()

    def join(self, timeout: float) -> None:
        """Wait for the reader threads to end: ``timeout`` seconds at most in all, and
        never past the stop's grace period (abandoned readers are not waited for)."""
        if self._inline:
            return
        deadline = time.monotonic() + timeout
        stopping = self._stop.is_set() or self._failed.is_set()
        if stopping:
            deadline = min(deadline, self._stopping_at() + self._grace)
        for (source_id, _), thread in zip(self._sources, self._threads, strict=True):
            if source_id in self._abandoned:
                continue
            while thread.is_alive() and (left := deadline - time.monotonic()) > 0:
                if stopping:
                    # Nobody takes what is queued any more (it is read again next run):
                    # emptying the queue frees a reader waiting for room, so it ends now
                    # rather than when the grace period abandons it.
                    self._discard_queued()
                thread.join(timeout=min(left, _PUT_RETRY_S))

    def _discard_queued(self) -> None:
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    @property
    def all_exhausted(self) -> bool:
        """True when every source said it has no more records."""
        return len(self._exhausted) == len(self._sources)

    def _read_inline(self, timeout: float) -> ReadBatch | ReaderDone | None:
        """The next batch of the sources in turn, read here: what a reader would queue.

        Once the run stops (or fails) each source not yet ended reports its end,
        as its reader would. A source that has nothing now is passed over; when
        none has anything, this waits ``timeout`` seconds and returns None.
        """
        count = len(self._sources)
        for _ in range(count):
            source_id, source = self._sources[self._turn]
            self._turn = (self._turn + 1) % count
            if source_id in self._ended:
                continue
            if self._stop.is_set() or self._failed.is_set():
                self._ended.add(source_id)
                return ReaderDone(source_id)
            try:
                began = time.perf_counter()
                batch = source.read(self._size, self._linger)
                _measure(self._stats[source_id], source, batch, time.perf_counter() - began)
            except Exception as exc:  # noqa: BLE001 - any connector failure must reach the main loop
                self._ended.add(source_id)
                return ReaderDone(source_id, exc)
            if batch is None:
                self._exhausted.add(source_id)
                self._ended.add(source_id)
                return ReaderDone(source_id)
            if batch.records:
                self._stats[source_id].add(records_out=len(batch.records))
                return ReadBatch(source_id, batch)
        if len(self._ended) < count:
            time.sleep(timeout)
        return None

    def _read(self, source_id: str, source: Source) -> None:
        stats = self._stats[source_id]
        try:
            while not self._stop.is_set():
                began = time.perf_counter()
                batch = source.read(self._size, self._linger)
                _measure(stats, source, batch, time.perf_counter() - began)
                if batch is None:
                    self._exhausted.add(source_id)
                    break
                if not batch.records or source_id in self._abandoned:
                    continue
                stats.add(records_out=len(batch.records))
                self._put(ReadBatch(source_id, batch))
            self._finish(ReaderDone(source_id))
        except Exception as exc:  # noqa: BLE001 - any connector failure must reach the main loop
            self._finish(ReaderDone(source_id, exc))

    def _finish(self, done: ReaderDone) -> None:
        with self._lock:
            if done.source in self._ended:  # abandoned: its end was reported already
                return
            self._ended.add(done.source)
        self._put(done)

    def _put(self, item: ReadBatch | ReaderDone) -> None:
        # Waits for room in short steps rather than forever: after a failure the
        # main loop no longer drains the queue, and a reader must not hang on it
        # (nor an abandoned one, whose items nobody takes any more).
        while not self._failed.is_set() and item.source not in self._abandoned:
            try:
                self._queue.put(item, timeout=_PUT_RETRY_S)
                return
            except queue.Full:
                continue

    def _stopping_at(self) -> float:
        """When the stop (or failure) was first seen."""
        with self._lock:
            if self._stopping_since is None:
                self._stopping_since = time.monotonic()
            return self._stopping_since

    def _running(self) -> list[tuple[str, Source]]:
        """The sources whose reader thread is still running and not abandoned."""
        return [
            (source_id, source)
            for (source_id, source), thread in zip(self._sources, self._threads, strict=True)
            if thread.is_alive() and source_id not in self._abandoned
        ]

    def _watch(self) -> None:
        # Polls rather than waits on ``stop``: a failure sets only ``failed``
        # first, and readers that ran dry need no watcher.
        while not (self._stop.wait(_WATCH_S) or self._failed.is_set()):
            if not self._running():
                return
        deadline = self._stopping_at() + self._grace
        while time.monotonic() < deadline:
            running = self._running()
            if not running:
                return
            for source_id, source in running:
                if isinstance(source, Interruptible):
                    try:
                        source.interrupt()
                    except Exception as exc:  # noqa: BLE001 - the other sources still stop
                        log.warning("source %r: interrupting its read failed: %s", source_id, exc)
            time.sleep(_INTERRUPT_RETRY_S)

    def _abandon_one(self) -> ReaderDone | None:
        """The end of one reader still running past the stop's grace period, if any."""
        if not (self._stop.is_set() or self._failed.is_set()):
            return None
        if time.monotonic() < self._stopping_at() + self._grace:
            return None
        with self._lock:
            for source_id, _ in self._sources:
                if source_id not in self._ended:
                    self._ended.add(source_id)
                    self._abandoned.add(source_id)
                    break
            else:
                return None
        log.warning(
            "source %r did not stop within %.1f s of the stop; no longer waiting for it "
            "(what it has read since the last checkpoint is read again on the next run)",
            source_id,
            self._grace,
        )
        return ReaderDone(source_id)


def _measure(stats: StageStats, source: Source, batch: SourceBatch | None, seconds: float) -> None:
    """A read's time (when it brought records: an idle wait is no latency) and the
    source's backlog after it."""
    if batch is not None and batch.records:
        stats.batch_seconds.observe(seconds)
    stats.backlog = source.backlog()
