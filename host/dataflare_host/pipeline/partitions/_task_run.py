"""One task's run, in the process reading its partitions: a worker process, a Ray actor,
or the driver's own thread when there is one worker.

The task runs the pipeline itself, as one process would, over its partitions
only: the source restricted to them, each sink that splits writing the
partition's own target. Its checkpoints go to the driver as :class:`Report`s
instead of to the file (the driver keeps every partition's position in one
checkpoint), so the order that makes delivery at least once holds as it does
in one process: sinks flushed first, then the positions reported.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from dataflare import PluginError
from dataflare_host._text import one_line
from dataflare_host.connectors import (
    PartitionedSource,
    PartitionPositions,
    Position,
    SharedSink,
    Sink,
    Source,
    SplitSink,
)
from dataflare_host.pipeline._checkpoint import Checkpoint, CheckpointStore
from dataflare_host.pipeline._stats import StageStats
from dataflare_host.pipeline.partitions._messages import Counts, Report, Task

__all__ = ["PipelineForTask", "TaskPipelineMaker", "TaskRun"]


class _Summary(Protocol):
    @property
    def status(self) -> str: ...

    @property
    def error(self) -> str | None: ...


class PipelineForTask(Protocol):
    """What a task needs of the pipeline it runs (the runner's ``Pipeline``)."""

    sources: list[Source]
    sinks: list[Sink]
    dead_letter: Sink | None
    checkpoints: CheckpointStore

    @property
    def stats(self) -> list[StageStats]: ...

    def run(self, progress: Any = None, *, handle_signals: bool = True) -> _Summary: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


TaskPipelineMaker = Callable[[str], PipelineForTask]
"""Builds, from the pipeline file, the one-process pipeline a task runs."""


class TaskRun:
    """Runs ``task`` with the pipeline ``make`` builds; every report goes to ``send``.

    :meth:`run` never raises: a failure is the last report's ``error`` (one line).
    """

    def __init__(
        self,
        make: TaskPipelineMaker,
        pipeline_file: str,
        task: Task,
        send: Callable[[Report], None],
    ) -> None:
        self._make = make
        self._file = pipeline_file
        self._task = task
        self._send = send
        self._at: dict[str, Position | None] = dict(task.at)
        self._pipeline: PipelineForTask | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def stop(self) -> None:
        """Ask the task to stop (from any thread): the batch in flight is committed."""
        with self._lock:
            self._stop.set()
            if self._pipeline is not None:
                self._pipeline.stop()

    def run(self) -> None:
        """Run the task to its end (its partitions read, a stop, or a failure)."""
        status, error = "failed", None
        counts: dict[str, Counts] = {}
        try:
            pipeline = self._prepare()
            with self._lock:
                self._pipeline = pipeline
                if self._stop.is_set():
                    pipeline.stop()
            try:
                summary = pipeline.run(handle_signals=False)
                status, error = summary.status, summary.error
                counts = _counts(pipeline.stats)
            finally:
                pipeline.close()
        except PluginError as exc:
            error = one_line(str(exc))
        except Exception as exc:  # noqa: BLE001 - the driver reports it; the worker goes on
            error = one_line(f"{type(exc).__name__}: {exc}")
        report = Report(self._task.number, dict(self._at), counts, status=status, error=error)
        self._send(report)

    def _prepare(self) -> PipelineForTask:
        pipeline = self._make(self._file)
        try:
            source = pipeline.sources[0]
            assert isinstance(source, PartitionedSource)
            source.restrict(self._task.partitions)
            for sink in [*pipeline.sinks, pipeline.dead_letter]:
                if isinstance(sink, SplitSink) and sink.splits():
                    # One partition per task whenever a sink splits (see _decide).
                    sink.for_partition(self._task.partitions[0])
                elif isinstance(sink, SharedSink):
                    sink.write_for(self._task.partitions)
            pipeline.checkpoints = _ReportingStore(self, pipeline, source)
        except BaseException:
            pipeline.close()
            raise
        return pipeline

    def saved(self, at: Mapping[str, Position | None], pipeline: PipelineForTask) -> None:
        """The task's pipeline checkpointed at ``at``: report it."""
        self._at.update(at)
        stats = pipeline.stats
        # Stage order puts the source first: its backlog is the task's partitions' lag.
        backlog = stats[0].backlog if stats else None
        self._send(Report(self._task.number, dict(self._at), _counts(stats), backlog))

    @property
    def task(self) -> Task:
        """The task this runs."""
        return self._task


class _ReportingStore(CheckpointStore):
    """The task pipeline's checkpoint: loaded from the task, saved to the driver."""

    def __init__(self, run: TaskRun, pipeline: PipelineForTask, source: PartitionedSource) -> None:
        super().__init__(Path(f"<{', '.join(run.task.partitions)}>"))
        self._run = run
        self._pipeline = pipeline
        self._source = source

    def load(self) -> Checkpoint:
        at = self._run.task.at
        if not any(at.get(p) is not None for p in self._run.task.partitions):
            return Checkpoint()
        joined = self._source.join_positions(PartitionPositions(at))
        return Checkpoint({self._run.task.source: joined})

    def save(self, checkpoint: Checkpoint) -> None:
        position = checkpoint.positions.get(self._run.task.source)
        if position is not None:
            at = self._source.split_position(position).at
            # A partition not read yet this run keeps the position it started from.
            read = {p: at[p] for p in self._run.task.partitions if at.get(p) is not None}
            self._run.saved(read, self._pipeline)

    def reset(self) -> None:
        """Never asked of a task (the driver resets the one checkpoint)."""


def _counts(stats: Sequence[StageStats]) -> dict[str, Counts]:
    return {s.stage: (s.records_in, s.records_out, s.filtered, s.errored) for s in stats}
