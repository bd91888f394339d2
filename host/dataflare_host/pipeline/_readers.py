"""Source reader threads: one per source, putting read batches on one bounded queue.

The queue is the backpressure: when the main loop (a slow sink) falls behind,
it fills and the readers block, so memory stays flat whatever the sources hold.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence

import attrs

from dataflare_host.connectors import Source, SourceBatch
from dataflare_host.pipeline._config import BatchSettings
from dataflare_host.pipeline._stats import PipelineStats

__all__ = ["ReadBatch", "ReaderDone", "SourceReaders"]

_PUT_RETRY_S = 0.1


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
    """

    def __init__(
        self,
        sources: Sequence[tuple[str, Source]],
        stats: PipelineStats,
        batch: BatchSettings,
        stop: threading.Event,
        failed: threading.Event,
    ) -> None:
        self._stats = stats
        self._size = batch.size
        self._linger = batch.linger_ms / 1000
        self._stop = stop
        self._failed = failed
        self._queue: queue.Queue[ReadBatch | ReaderDone] = queue.Queue(maxsize=batch.queue_batches)
        self._exhausted: set[str] = set()
        self._threads = [
            threading.Thread(
                target=self._read,
                args=(source_id, source),
                daemon=True,
                name=f"dataflare-source-{source_id}",
            )
            for source_id, source in sources
        ]

    def __len__(self) -> int:
        """How many readers there are: one per source."""
        return len(self._threads)

    def start(self) -> None:
        """Start every reader thread."""
        for thread in self._threads:
            thread.start()

    def get(self, timeout: float) -> ReadBatch | ReaderDone | None:
        """The next batch or reader end, or None when none came within ``timeout`` seconds."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for each reader thread to end."""
        for thread in self._threads:
            thread.join(timeout=timeout)

    @property
    def all_exhausted(self) -> bool:
        """True when every source said it has no more records."""
        return len(self._exhausted) == len(self._threads)

    def _read(self, source_id: str, source: Source) -> None:
        stats = self._stats[source_id]
        try:
            while not self._stop.is_set():
                batch = source.read(self._size, self._linger)
                if batch is None:
                    self._exhausted.add(source_id)
                    break
                if not batch.records:
                    continue
                stats.add(records_out=len(batch.records))
                self._put(ReadBatch(source_id, batch))
            self._put(ReaderDone(source_id))
        except Exception as exc:  # noqa: BLE001 - any connector failure must reach the main loop
            self._put(ReaderDone(source_id, exc))

    def _put(self, item: ReadBatch | ReaderDone) -> None:
        # Waits for room in short steps rather than forever: after a failure the
        # main loop no longer drains the queue, and a reader must not hang on it.
        while not self._failed.is_set():
            try:
                self._queue.put(item, timeout=_PUT_RETRY_S)
                return
            except queue.Full:
                continue
