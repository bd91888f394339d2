"""Partition workers as Ray actors: the same tasks as worker processes, placed by Ray.

An actor reads its partitions where it runs, so the pipeline file, its plugins
and a file source's files must be at the same path on every node (a shared or
synced directory), as for the chain's actors (:mod:`..engines._ray`, with which
starting, placing and killing them is shared). Each actor runs its task in a
thread and hands its reports over when asked; it takes two calls at once, so a
stop reaches it while it waits for a report.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence

from dataflare_host.pipeline._ray_actors import RayActorSlots, actor_path, actor_place
from dataflare_host.pipeline.partitions._log_forwarding import forward_logs
from dataflare_host.pipeline.partitions._messages import LogLine, Report, Task
from dataflare_host.pipeline.partitions._task_run import TaskPipelineMaker, TaskRun

__all__ = ["ActorSlots"]

_ASK_S = 1.0  # how long an actor holds a call for reports before answering none


class _PartitionActor:
    """The remote side: runs one task at a time and queues its reports."""

    def __init__(self, pipeline_file: str, make: TaskPipelineMaker, log_level: int) -> None:
        self._file = pipeline_file
        self._make = make
        self._reports: queue.Queue[Report | LogLine] = queue.Queue()
        self._run: TaskRun | None = None
        forward_logs(self._reports.put, log_level)

    def where(self) -> str:
        return actor_place()

    def start(self, task: Task) -> None:
        self._run = TaskRun(self._make, self._file, task, self._reports.put)
        threading.Thread(target=self._run.run, daemon=True).start()

    def reports(self) -> list[Report | LogLine]:
        try:
            got = [self._reports.get(timeout=_ASK_S)]
        except queue.Empty:
            return []
        while True:
            try:
                got.append(self._reports.get_nowait())
            except queue.Empty:
                return got

    def stop(self) -> None:
        if self._run is not None:
            self._run.stop()


class ActorSlots(RayActorSlots):
    """One actor per worker slot; a dead actor is replaced by a new one, and its partitions
    resume from their reported positions."""

    def __init__(
        self,
        pipeline_file: str,
        workers: int,
        make: TaskPipelineMaker,
        log_level: int,
        address: str | None,
    ) -> None:
        super().__init__(_PartitionActor, workers, address)
        self._file = actor_path(pipeline_file)
        self._make = make
        self._log_level = log_level

    def launch(self, slot: int) -> None:
        """Start a new actor for ``slot``."""
        self._start(slot, self._file, self._make, self._log_level, max_concurrency=2)

    def where(self, slot: int) -> str:
        """Where slot ``slot``'s actor runs (waits for it to start)."""
        return self._placed(slot)

    def assign(self, slot: int, task: Task) -> None:
        """Start ``task`` on slot ``slot``'s actor and ask for its first reports."""
        actor = self._actors[slot]
        actor.start.remote(task)
        self._await(slot, actor.reports.remote())

    def stop(self, slot: int) -> None:
        """Ask slot ``slot``'s task to stop."""
        actor = self._actors[slot]
        if actor is not None:
            actor.stop.remote()

    def wait(
        self, slots: Sequence[int], timeout: float
    ) -> list[tuple[int, list[Report | LogLine] | None]]:
        """Reports and log lines of busy actors; None for one that died."""
        answers: list[tuple[int, list[Report | LogLine] | None]] = self._finished(slots, timeout)
        for slot, reports in answers:
            if reports is not None and not any(isinstance(r, Report) and r.status for r in reports):
                self._await(slot, self._actors[slot].reports.remote())  # the task goes on
        return answers
