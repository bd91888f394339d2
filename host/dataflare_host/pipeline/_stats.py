"""Counters per pipeline stage, read by the progress display and the summary."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

import attrs

__all__ = ["PipelineStats", "StageStats"]


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
