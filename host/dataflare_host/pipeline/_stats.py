"""Counters per pipeline stage, read by the progress display and the summary."""

from __future__ import annotations

import threading
import time

import attrs

__all__ = ["StageStats"]


@attrs.define
class StageStats:
    """Records through one stage. ``role`` is source, processor, sink or dead_letter."""

    stage: str
    role: str
    kind: str
    records_in: int = 0
    records_out: int = 0
    filtered: int = 0
    errored: int = 0
    reloads: int = 0
    started: float = attrs.field(factory=time.monotonic)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, repr=False, eq=False)

    def add(
        self, *, records_in: int = 0, records_out: int = 0, filtered: int = 0, errored: int = 0
    ) -> None:
        """Count a batch's records (thread-safe: readers and the main loop both count)."""
        with self._lock:
            self.records_in += records_in
            self.records_out += records_out
            self.filtered += filtered
            self.errored += errored

    def rate(self) -> float:
        """Records per second through this stage since it started."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return (self.records_out if self.role == "source" else self.records_in) / elapsed
