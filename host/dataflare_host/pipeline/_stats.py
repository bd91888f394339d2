"""Counters per pipeline stage, read by the progress display and the summary."""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Iterable, Sequence

import attrs

from dataflare import Record
from dataflare_host.connectors._base import Backlog

__all__ = ["LATENCY_BUCKETS", "Histogram", "PipelineStats", "StageStats", "record_age"]

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
"""Upper bounds (seconds) of the latency histograms: a batch through a fast native
plugin up to a record a minute late."""


@attrs.define
class Histogram:
    """Observations counted per bucket (Prometheus' cumulative form is made at a scrape).

    ``counts[i]`` counts observations at most ``bounds[i]`` and above the bound
    before; the last entry counts those above every bound.
    """

    bounds: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = attrs.field()
    total: float = 0.0
    _lock: threading.Lock = attrs.field(factory=threading.Lock, repr=False, eq=False)

    @counts.default
    def _no_counts(self) -> list[int]:
        return [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        """Count one observation (thread-safe)."""
        index = bisect.bisect_left(self.bounds, value)
        with self._lock:
            self.counts[index] += 1
            self.total += value

    def snapshot(self) -> tuple[list[int], float]:
        """The counts per bucket and the sum of every observation, read together."""
        with self._lock:
            return list(self.counts), self.total


@attrs.define
class StageStats:
    """Records through one stage. ``role`` is source, processor, sink, dead_letter or worker.

    ``batch_seconds`` holds how long the stage took per batch (a source's read, a
    processor's plugin, a sink's write); ``record_latency`` (sinks) how old each
    delivered batch's first timestamped record was; ``backlog`` (sources) what is
    left to read; ``restarts`` (workers) how often the worker was started again.
    """

    stage: str
    role: str
    kind: str
    records_in: int = 0
    records_out: int = 0
    filtered: int = 0
    errored: int = 0
    reloads: int = 0
    restarts: int = 0
    started: float = attrs.field(factory=time.monotonic)
    batch_seconds: Histogram = attrs.field(factory=Histogram, repr=False, eq=False)
    record_latency: Histogram = attrs.field(factory=Histogram, repr=False, eq=False)
    backlog: Backlog | None = attrs.field(default=None, repr=False, eq=False)
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


class PipelineStats:
    """A pipeline's stage counters: in stage order, and by stage id.

    Stage order is sources, processors, sinks, then the dead-letter sink: the
    order the progress display and the run summary show. Stage ids are unique
    across all roles (the pipeline config check says so), so an id names one
    stage whatever its role.
    """

    def __init__(self, stages: Iterable[StageStats]) -> None:
        self.ordered: list[StageStats] = list(stages)
        self._by_id = {stats.stage: stats for stats in self.ordered}

    def __getitem__(self, stage_id: str) -> StageStats:
        """The counters of the stage with this id (KeyError when there is none)."""
        return self._by_id[stage_id]

    def with_role(self, role: str) -> list[StageStats]:
        """The counters of every stage with this role, in stage order."""
        return [stats for stats in self.ordered if stats.role == role]

    @property
    def sources(self) -> list[StageStats]:
        """The sources' counters, in config order."""
        return self.with_role("source")

    @property
    def processors(self) -> list[StageStats]:
        """The processors' counters, in chain order."""
        return self.with_role("processor")

    @property
    def sinks(self) -> list[StageStats]:
        """The sinks' counters, in config order (not the dead-letter sink)."""
        return self.with_role("sink")

    @property
    def dead_letter(self) -> StageStats | None:
        """The dead-letter sink's counters, or None when the pipeline has none."""
        found = self.with_role("dead_letter")
        return found[0] if found else None


def record_age(outputs: Sequence[Record]) -> float | None:
    """Seconds since a batch's first record's timestamp (None: it has none)."""
    if not outputs:
        return None
    timestamp = outputs[0].timestamp
    if timestamp is None:
        return None
    return max(time.time() - timestamp / 1000, 0.0)
