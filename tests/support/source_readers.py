"""Source readers (the pipeline's reading side) over given sources, as a test drives them."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from dataflare_host.connectors import Source
from dataflare_host.pipeline._config import BatchSettings
from dataflare_host.pipeline._readers import SourceReaders
from dataflare_host.pipeline._stats import PipelineStats, StageStats


def source_readers(
    sources: Mapping[str, Source], *, grace_s: float = 1, queue_batches: int = 2
) -> tuple[SourceReaders, PipelineStats, threading.Event]:
    """Readers of ``sources`` (not started), their stats, and the event that stops them."""
    stop = threading.Event()
    stats = PipelineStats(StageStats(name, "source", "test") for name in sources)
    readers = SourceReaders(
        list(sources.items()),
        stats,
        BatchSettings(size=10, linger_ms=10, queue_batches=queue_batches),
        stop,
        threading.Event(),
        stop_grace_s=grace_s,
    )
    return readers, stats, stop
