"""The driver of a pipeline whose workers read the partitions: it assigns, they read.

The driver hands each worker a task (partitions that end: one at a time, the
next when one is done; partitions that do not: an equal share each, for the
whole run), keeps every partition's last reported position in the one
checkpoint, and when a worker dies gives its task, from those positions, to a
new worker. Records never pass through the driver: it only reads reports.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Sequence
from typing import Literal, Protocol

from dataflare_host.connectors import Backlog, PartitionPositions, Position
from dataflare_host.pipeline._checkpoint import Checkpoint, CheckpointStore
from dataflare_host.pipeline._errors import PipelineError
from dataflare_host.pipeline._stats import PipelineStats, StageStats
from dataflare_host.pipeline.partitions._decide import PartitionReading
from dataflare_host.pipeline.partitions._messages import Counts, LogLine, Report, Task

__all__ = ["PartitionedRun", "Slots"]

log = logging.getLogger("dataflare.pipeline")

_WAIT_S = 0.25
_PROGRESS_S = 0.25
_RESTARTS = 3
"""How many times in a row one partition's task may lose its worker with no position
reported in between (a crash loop, not kills now and then) before the run fails."""
_STOP_GRACE_S = 30.0
"""How long a stop waits for the workers' last reports before killing them."""


class Slots(Protocol):
    """Where the tasks run (worker processes, Ray actors, a thread): one task per slot."""

    kind: str

    def launch(self, slot: int) -> None: ...

    def where(self, slot: int) -> str: ...

    def assign(self, slot: int, task: Task) -> None: ...

    def stop(self, slot: int) -> None: ...

    def wait(
        self, slots: Sequence[int], timeout: float
    ) -> list[tuple[int, list[Report | LogLine] | None]]: ...

    def kill(self, slot: int) -> None: ...

    def ended(self, slot: int) -> str | None: ...

    def close(self) -> None: ...


class PartitionedRun:
    """One run of a pipeline whose ``slots`` read ``reading.source``'s partitions; the
    checkpoint is saved at most once per ``interval_s`` (the workers' reports between
    two saves go into the next), and once more at the end."""

    def __init__(
        self,
        reading: PartitionReading,
        slots: Slots,
        store: CheckpointStore,
        stats: PipelineStats,
        interval_s: float,
    ) -> None:
        self._reading = reading
        self._slots = slots
        self._store = store
        self._stats = stats
        self._interval = interval_s
        self._saved_at = 0.0
        self._at: dict[str, Position | None] = {}
        self._ended: set[str] = set()
        self._counts: dict[int, dict[str, Counts]] = {}
        self._backlogs: dict[int, Backlog] = {}
        # Bytes a partition no task is reading has left: its file's size until a task
        # reports on it, then what the last task said (a lost worker's file, queued again).
        self._waiting_left: dict[str, int] = {}
        self._busy: dict[int, Task] = {}
        self._lost: collections.Counter[tuple[str, ...]] = collections.Counter()
        self._numbers = iter(range(1, 1 << 62))
        self._places: list[str] = []
        self.worker_stats = [
            StageStats(f"worker-{i + 1}", "worker", slots.kind) for i in range(reading.workers)
        ]
        """One counter per worker: what it read, and where it runs."""

    def summary(self) -> str:
        """The workers and where they ran, for the run summary."""
        places = "; ".join(self._places) or "none started"
        # The workers started (no more than tasks), each slot's last one: a replaced
        # worker's place is its replacement's.
        count = len(self._places) or self._reading.workers
        return (
            f"{count} {self._slots.kind} worker(s) reading partitions of "
            f"{self._reading.source_id!r} ({places})"
        )

    def run(
        self,
        saved: Position | None,
        stopping: Callable[[], bool],
        progress: Callable[[], None],
    ) -> Literal["completed", "stopped"]:
        """Read every partition to its end (or until ``stopping()``); raises PipelineError
        with the failed task's line when one fails."""
        source = self._reading.source
        names = self._reading.partitions
        positions = PartitionPositions.from_json(saved) or source.split_position(saved)
        self._at = {name: positions.at.get(name) for name in names}
        self._ended = set(positions.ended) & set(names)
        todo = collections.deque(self._tasks(names))
        self._waiting_left = _sizes_left(source, names, self._at, self._ended)
        if self._waiting_left:  # before any report: every file not read yet
            self._stats[self._reading.source_id].backlog = Backlog(
                sum(self._waiting_left.values()), "bytes"
            )
        count = min(self._reading.workers, len(todo))
        for slot in range(count):
            self._slots.launch(slot)
        self._places = [self._placed(slot) for slot in range(count)]
        del self.worker_stats[count:]  # no more workers than tasks
        stopped = failure = None
        last_progress = 0.0
        try:
            while todo or self._busy:
                if stopped is None and (failure is not None or stopping()):
                    stopped = time.monotonic()
                    todo.clear()
                    for slot in self._busy:
                        self._slots.stop(slot)
                if stopped is not None and time.monotonic() - stopped > _STOP_GRACE_S:
                    log.warning("workers did not stop within %.0f s: killing them", _STOP_GRACE_S)
                    break
                for slot in range(count):
                    if slot not in self._busy and todo:
                        task = todo.popleft()
                        self._busy[slot] = task
                        self._ended.difference_update(task.partitions)  # ends again, or not
                        self._slots.assign(slot, task)
                for slot, reports in self._slots.wait(list(self._busy), _WAIT_S):
                    if reports is None and stopped is not None:
                        self._busy.pop(slot, None)  # stopping anyway: its positions stand
                    elif reports is None:
                        todo.append(self._lose(slot))
                    else:
                        for report in reports:
                            if isinstance(report, LogLine):
                                logging.getLogger(report.logger).log(report.level, report.message)
                            else:
                                failure = self._take(slot, report) or failure
                if time.monotonic() - last_progress >= _PROGRESS_S:
                    progress()
                    last_progress = time.monotonic()
        finally:
            # Every position the workers reported covers output they flushed: kept
            # whatever ends the loop (a crash loop raises from _lose), so a rerun does
            # not read again the partitions finished since the last save.
            self._save()
        if failure is not None:
            raise PipelineError(failure)
        return "stopped" if stopped is not None else "completed"

    def _tasks(self, names: Sequence[str]) -> list[Task]:
        """Every partition, one per task or shared out among the workers. One that ended
        in an earlier run is read again from its end: what was appended since (a file
        grown, a topic's new messages) is read, as it is reading in one process."""
        groups: list[tuple[str, ...]]
        if self._reading.one_each:
            groups = [(name,) for name in names]
        else:
            shares = min(self._reading.workers, len(names))
            groups = [tuple(names[i::shares]) for i in range(shares)]
        return [self._task(group) for group in groups]

    def _task(self, partitions: tuple[str, ...]) -> Task:
        at = {name: self._at.get(name) for name in partitions}
        return Task(next(self._numbers), self._reading.source_id, partitions, at)

    def _take(self, slot: int, report: Report) -> str | None:
        """Apply one report; the failure's line when it says its task failed."""
        task = self._busy.get(slot)
        if task is None or task.number != report.task:
            return None  # from a task given up on (its worker was replaced)
        if any(report.at.get(p) != self._at.get(p) for p in task.partitions):
            # It read on since: a worker killed now and then, not one dying in one place.
            self._lost.pop(task.partitions, None)
        self._at.update(report.at)
        self._count(slot, report)
        self._show_backlog(report)
        if report.status is not None:
            del self._busy[slot]
            if report.status == "completed" and self._reading.source.partitions_end():
                self._ended.update(task.partitions)
        self._save(when_due=True)
        if report.status == "failed":
            names = ", ".join(task.partitions)
            where = f"partition{'s' if len(task.partitions) > 1 else ''} {names}"
            return f"{where}: {report.error or 'its worker failed'}"
        return None

    def _lose(self, slot: int) -> Task:
        """Worker ``slot`` died: a new one for the slot, its task again from its positions."""
        task = self._busy.pop(slot)
        self._lost[task.partitions] += 1
        what = ", ".join(task.partitions)
        if self._lost[task.partitions] > _RESTARTS:
            ended = self._slots.ended(slot)
            how = f" (the last {ended})" if ended else ""
            raise PipelineError(
                f"worker-{slot + 1} died {_RESTARTS + 1} times in a row{how} reading "
                f"partition(s) {what} of source {self._reading.source_id!r}, each time from "
                f"{self._resumed_at(task.partitions)}: a record there, or a plugin as it "
                "starts, ends the process; the checkpoint holds where each resumes"
            )
        log.warning(
            "worker-%d died reading partition(s) %s: a new worker resumes them", slot + 1, what
        )
        self._slots.launch(slot)
        self.worker_stats[slot].restarts += 1
        self._places[slot] = self._placed(slot)
        return self._task(task.partitions)

    def _resumed_at(self, partitions: Sequence[str]) -> str:
        """Where ``partitions`` resume: ``line 2,500 of part-1.jsonl``, ``the start of
        p3``, ``offset 1,200 of p0``."""
        spots = []
        for name in partitions:
            at = self._at.get(name)
            if not at:
                spots.append(f"the start of {name}")
            elif "line" in at:  # a file's
                spots.append(f"line {int(at['line']):,} of {name}")
            elif isinstance(at.get("offsets"), dict) and name in at["offsets"]:  # a topic's
                spots.append(f"offset {int(at['offsets'][name]):,} of partition {name}")
            else:  # another source's: its position as it keeps it
                spots.append(f"{name} at {at}")
        return ", ".join(spots)

    def _placed(self, slot: int) -> str:
        """Where worker ``slot`` runs, also shown on its counter."""
        where = self._slots.where(slot)
        restarts = self.worker_stats[slot].restarts
        self.worker_stats[slot].kind = f"{self._slots.kind} {where}" + (
            f", {restarts} restart(s)" if restarts else ""
        )
        return where

    def _count(self, slot: int, report: Report) -> None:
        before = self._counts.get(report.task, {})
        source = self._reading.source_id
        if source in report.counts:  # a worker's counter: the records it read
            read = report.counts[source][1] - before.get(source, (0, 0, 0, 0))[1]
            self.worker_stats[slot].add(records_in=read, records_out=read)
        for stage, now in report.counts.items():
            try:
                stats = self._stats[stage]
            except KeyError:
                continue  # a worker's own per-worker counters
            was = before.get(stage, (0, 0, 0, 0))
            delta = [n - w for n, w in zip(now, was, strict=True)]
            _add(stats, delta)
        self._counts[report.task] = dict(report.counts)

    def _show_backlog(self, report: Report) -> None:
        """The source's backlog: every running task's partitions' together, and the bytes
        of the files no task reads yet (a file source's; a topic's partitions waiting for a
        worker are not counted: their lag needs the broker)."""
        task = next((t for t in self._busy.values() if t.number == report.task), None)
        if report.status is not None:
            self._backlogs.pop(report.task, None)
        elif report.backlog is not None:
            self._backlogs[report.task] = report.backlog
            if task is not None and len(task.partitions) == 1 and report.backlog.unit == "bytes":
                self._waiting_left[task.partitions[0]] = report.backlog.amount
        live = {self._busy[slot].number for slot in self._busy}
        backlogs = [b for number, b in self._backlogs.items() if number in live]
        reading = {name for t in self._busy.values() for name in t.partitions}
        waiting = sum(
            left for name, left in self._waiting_left.items()
            if name not in reading and name not in self._ended
        )
        stats = self._stats[self._reading.source_id]
        if backlogs or waiting:
            partitions = tuple(p for b in backlogs for p in b.partitions)
            amount = sum(b.amount for b in backlogs) + waiting
            unit = backlogs[0].unit if backlogs else "bytes"
            stats.backlog = Backlog(amount, unit, partitions)
        elif stats.backlog is not None:
            stats.backlog = Backlog(0, stats.backlog.unit)  # no task reading: nothing left

    def _save(self, *, when_due: bool = False) -> None:
        now = time.monotonic()
        if when_due and now - self._saved_at < self._interval:
            return
        self._saved_at = now
        positions = PartitionPositions(dict(self._at), frozenset(self._ended))
        self._store.save(Checkpoint({self._reading.source_id: positions.to_json()}))

    def close(self) -> None:
        """Stop every worker (safe to call twice)."""
        self._slots.close()


def _add(stats: StageStats, delta: Sequence[int]) -> None:
    records_in, records_out, filtered, errored = delta
    stats.add(records_in=records_in, records_out=records_out, filtered=filtered, errored=errored)


def _sizes_left(
    source: object, names: Sequence[str], at: dict[str, Position | None], ended: set[str]
) -> dict[str, int]:
    """Each partition not begun yet and not ended: its whole size, from a source that
    knows it (a file source: ``partition_sizes``); none from others."""
    sizes = getattr(source, "partition_sizes", None)
    if sizes is None:
        return {}
    known: dict[str, int] = sizes()
    return {n: known[n] for n in names if n in known and at.get(n) is None and n not in ended}
