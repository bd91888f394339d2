"""Partition workers as Ray actors: the same tasks as worker processes, placed by Ray.

An actor reads its partitions where it runs, so the pipeline file, its plugins
and a file source's files must be at the same path on every node (a shared or
synced directory), as for the chain's actors (:mod:`..engines._ray`). Each
actor runs its task in a thread and hands its reports over when asked; it takes
two calls at once, so a stop reaches it while it waits for a report.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Sequence
from typing import Any

from dataflare_host.pipeline._errors import PipelineError
from dataflare_host.pipeline.engines._ray import ACTOR_CPUS, import_ray, join_ray
from dataflare_host.pipeline.partitions._log_forwarding import forward_logs
from dataflare_host.pipeline.partitions._messages import LogLine, Report, Task
from dataflare_host.pipeline.partitions._task_run import TaskPipelineMaker, TaskRun

__all__ = ["ActorSlots"]

_ASK_S = 1.0  # how long an actor holds a call for reports before answering none
_START_TIMEOUT_S = 600.0


class _PartitionActor:
    """The remote side: runs one task at a time and queues its reports."""

    def __init__(self, pipeline_file: str, make: TaskPipelineMaker, log_level: int) -> None:
        self._file = pipeline_file
        self._make = make
        self._reports: queue.Queue[Report | LogLine] = queue.Queue()
        self._run: TaskRun | None = None
        forward_logs(self._reports.put, log_level)

    def where(self) -> str:
        import ray

        return f"pid {os.getpid()} on node {ray.get_runtime_context().get_node_id()[:8]}"

    def pid(self) -> int:
        return os.getpid()

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


class ActorSlots:
    """One actor per worker slot; a dead actor is replaced by a new one (ours, not Ray's
    restart, so its partitions resume from their reported positions)."""

    kind = "ray"

    def __init__(
        self,
        pipeline_file: str,
        workers: int,
        make: TaskPipelineMaker,
        log_level: int,
        address: str | None,
    ) -> None:
        self._ray = import_ray()
        join_ray(self._ray, address)
        self._file = pipeline_file
        self._make = make
        self._log_level = log_level
        self._remote = self._ray.remote(_PartitionActor)
        self._actors: list[Any] = [None] * workers
        self._asks: dict[int, Any] = {}

    def actor(self, slot: int) -> Any:
        """The actor handle of a slot (tests kill it)."""
        return self._actors[slot]

    def launch(self, slot: int) -> None:
        """Start a new actor for ``slot``."""
        self.kill(slot)
        self._actors[slot] = self._remote.options(
            num_cpus=ACTOR_CPUS, max_restarts=0, max_concurrency=2, scheduling_strategy="SPREAD"
        ).remote(self._file, self._make, self._log_level)

    def where(self, slot: int) -> str:
        """Where slot ``slot``'s actor runs (waits for it to start)."""
        try:
            return str(self._ray.get(self._actors[slot].where.remote(), timeout=_START_TIMEOUT_S))
        except Exception as exc:  # Ray wraps the actor's own error in its types
            cause = getattr(exc, "cause", None) or exc
            raise PipelineError(f"worker-{slot + 1} (Ray actor) could not start: {cause}") from exc

    def assign(self, slot: int, task: Task) -> None:
        """Start ``task`` on slot ``slot``'s actor and ask for its first reports."""
        actor = self._actors[slot]
        actor.start.remote(task)
        self._asks[slot] = actor.reports.remote()

    def stop(self, slot: int) -> None:
        """Ask slot ``slot``'s task to stop."""
        actor = self._actors[slot]
        if actor is not None:
            actor.stop.remote()

    def wait(
        self, slots: Sequence[int], timeout: float
    ) -> list[tuple[int, list[Report | LogLine] | None]]:
        """Reports and log lines of busy actors; None for one that died."""
        asks = {self._asks[slot]: slot for slot in slots if slot in self._asks}
        if not asks:
            return []
        done, _ = self._ray.wait(list(asks), num_returns=1, timeout=timeout)
        if done:
            more, _ = self._ray.wait(list(asks), num_returns=len(asks), timeout=0)
            done = list({*done, *more})
        answers: list[tuple[int, list[Report | LogLine] | None]] = []
        for ref in done:
            slot = asks[ref]
            del self._asks[slot]
            try:
                reports: list[Report | LogLine] = self._ray.get(ref)
            except self._ray.exceptions.RayActorError:
                answers.append((slot, None))
                continue
            if not any(isinstance(r, Report) and r.status for r in reports):
                self._asks[slot] = self._actors[slot].reports.remote()
            answers.append((slot, reports))
        return answers

    def kill(self, slot: int) -> None:
        """Kill a slot's actor (no restart: :meth:`launch` makes a new one)."""
        actor = self._actors[slot]
        self._actors[slot] = None
        self._asks.pop(slot, None)
        if actor is not None:
            self._ray.kill(actor, no_restart=True)

    def close(self) -> None:
        """Kill every actor (the Ray cluster itself is left running)."""
        for slot in range(len(self._actors)):
            self.kill(slot)
