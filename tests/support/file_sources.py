"""A file source read to its end, or read once and resumed from the position it gave."""

from __future__ import annotations

from typing import Any

from dataflare import Record
from dataflare_host.connectors import FileSource, FileSourceConfig, SourceBatch


def read_all(
    path: Any, max_records: int = 7, *, defer: bool = False, **config: Any
) -> list[Record]:
    """Every record of the file source on ``path`` (``config``: its other settings),
    read ``max_records`` at a time; ``defer``: as deferred (worker) batches."""
    source = FileSource(FileSourceConfig(str(path), **config), {})
    if defer:
        source.defer_records()
    source.connect(None)
    records: list[Record] = []
    try:
        while (batch := source.read(max_records, 0.0)) is not None:
            records.extend(batch.records)
    finally:
        source.close()
    return records


def read_then_resume(path: Any, first: int) -> tuple[SourceBatch, SourceBatch]:
    """A first read of ``first`` records, and what a new source resumed from that read's
    position reads next (both must be batches)."""
    source = FileSource(FileSourceConfig(str(path)), {})
    source.connect(None)
    try:
        before = source.read(first, 0.0)
    finally:
        source.close()
    assert before is not None
    again = FileSource(FileSourceConfig(str(path)), {})
    again.connect(before.position)
    try:
        after = again.read(100, 0.0)
    finally:
        again.close()
    assert after is not None
    return before, after
