"""Batches over a pool of workers (processes or Ray actors), handed back in order.

The driver keeps the queue: spread tasks go to any idle worker, serial tasks
(see :mod:`._plan`) to the worker that owns their partition, one batch at a
time in source order. A worker that dies is started again and its task goes
back to the head of the queue (at least once; the task carries its starting
state, so a retried aggregate batch gives the same result). A task running
past its processors' time limits has its worker killed and replaced, and the
batch fails with an error naming the limit.

With two cores and two workers, whatever the driver does per record is taken
from the workers, so its work per batch is a few C calls (see :mod:`._wire`):
a file source leaves its lines unmade (:meth:`PoolEngine.adopt_sources`) and
the workers make, check and run them; outputs come back framed and are made
records only if a sink needs records rather than the values joined.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import attrs

from dataflare import Record
from dataflare_host.connectors import Source
from dataflare_host.pipeline._assemble import ProcessorStage
from dataflare_host.pipeline._errors import PipelineError
from dataflare_host.pipeline._stats import StageStats
from dataflare_host.pipeline.engines import _wire
from dataflare_host.pipeline.engines._keyed import dump_keyed, load_keyed
from dataflare_host.pipeline.engines._plan import (
    Plan,
    carried_state,
    join,
    merge,
    partition_of,
    put_state,
)
from dataflare_host.pipeline.engines._protocol import DefersRecords, Done
from dataflare_host.plugins._chain import ChainResult

__all__ = ["Backend", "PoolEngine"]

log = logging.getLogger("dataflare.engine")

MAX_ATTEMPTS = 4
"""A batch whose worker dies this many times fails the run (a plugin that crashes its host)."""

_GRACE_S = 0.5


class Backend(Protocol):
    """Starts, feeds and kills workers; the engine decides what each one runs."""

    kind: str

    def spawn(self, slot: int) -> str:
        """Start (or restart) worker ``slot``, waiting until its plugins are loaded;
        returns where it runs (a pid, a node). Raises PipelineError when it cannot."""

    def launch(self, slot: int) -> None:
        """Start worker ``slot`` without waiting for it (see :meth:`await_ready`)."""

    def await_ready(self, slot: int) -> str:
        """Wait until a launched worker's plugins are loaded: :meth:`spawn` in two halves,
        so that workers load their plugins at the same time."""

    def send(self, slot: int, payload: bytes) -> None:
        """Give an idle worker a task."""

    def wait(self, slots: Sequence[int], timeout: float) -> list[tuple[int, bytes | None]]:
        """Answers from busy ``slots`` (None: the worker died), waiting up to ``timeout``."""

    def kill(self, slot: int) -> None:
        """Kill a worker at once."""

    def close(self) -> None:
        """Stop every worker."""


@attrs.define(eq=False)
class _Batch:
    tag: Any
    first: ChainResult | None = None
    parts: dict[int, ChainResult] = attrs.Factory(dict)
    open_parts: int = -1  # -1: the serial part has not started
    error: PipelineError | None = None
    states: dict[str, bytes | None] = attrs.Factory(dict)
    keyed: dict[str, dict[bytes | None, bytes | None]] = attrs.Factory(dict)
    done: bool = False


@attrs.define(eq=False)
class _Task:
    batch: _Batch
    serial: bool
    part: int
    payload: bytes
    records: int
    limit_s: float
    attempts: int = 0


class PoolEngine:
    """The chain in ``workers`` workers started by ``backend``."""

    def __init__(
        self,
        stages: Sequence[ProcessorStage],
        backend: Backend,
        workers: int,
        max_in_flight: int | None = None,
    ) -> None:
        self.name = backend.kind
        self._stages = stages
        self._backend = backend
        self._n = workers
        self._plan = Plan.of_stages(stages)
        self._max = max_in_flight or 2 * workers + 1
        limits = [s.config.time_limit_s for s in stages]
        self._limits = (sum(limits[: self._plan.split]), sum(limits[self._plan.split :]))
        self._batches: collections.deque[_Batch] = collections.deque()
        self._shared: collections.deque[_Task] = collections.deque()
        self._pinned: list[collections.deque[_Task]] = [collections.deque() for _ in range(workers)]
        self._busy: dict[int, tuple[_Task, float]] = {}
        self._serial_busy = False
        # Running state: what the next serial task starts from (ahead of what sinks took).
        self._states: dict[str, bytes | None] = {}
        self._keyed: dict[str, dict[bytes | None, bytes | None]] = {}
        self._delivered_keyed: dict[str, dict[bytes | None, bytes | None]] = {}
        self.restarts = [0] * workers
        self.worker_stats = [
            StageStats(f"worker-{i + 1}", "worker", backend.kind) for i in range(workers)
        ]
        self._closed = False
        self._dead: set[int] = set()
        self._failed = False

    # -- life cycle ---------------------------------------------------------

    def start(self, saved: Mapping[str, bytes | None]) -> None:
        """Start every worker, and take the aggregates' state from the driver's plugins."""
        split = self._plan.split
        self._states = {
            self._stages[i].id: carried_state(self._stages[i].plugin)
            for i in self._plan.carried
            if i >= split
        }
        if self._plan.partitioned:
            self._keyed = load_keyed(saved, list(self._states))
            self._delivered_keyed = {k: dict(v) for k, v in self._keyed.items()}
            self._states = {}
        for slot in range(self._n):
            self._backend.launch(slot)
        for slot in range(self._n):
            where = self._backend.await_ready(slot)
            self.worker_stats[slot].kind = f"{self.name} {where}"
        started = time.monotonic()  # rates count from when every worker is up
        for stats in self.worker_stats:
            stats.started = started

    def close(self) -> None:
        """Stop every worker (batches in flight are dropped: they were never checkpointed)."""
        if not self._closed:
            self._closed = True
            self._backend.close()

    def summary(self) -> str:
        """One line for the run summary."""
        restarts = sum(self.restarts)
        return f"engine {self.name}, {self._n} workers" + (
            f", {restarts} restart(s)" if restarts else ""
        )

    # -- batches ------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Batches submitted and not handed back."""
        return len(self._batches)

    @property
    def full(self) -> bool:
        """True when the in-flight bound is reached."""
        return len(self._batches) >= self._max

    def adopt_sources(self, sources: Sequence[Source]) -> None:
        """Have sources that can leave their records for the workers to make do so (a file
        source: the driver then only cuts lines), when a spread part takes every batch."""
        if not self._plan.spread:
            return  # the serial part's worker is given records the driver made
        for source in sources:
            if isinstance(source, DefersRecords):
                source.defer_records()

    def submit(self, tag: Any, records: Sequence[Record]) -> None:
        """Queue a batch: its spread part goes to any idle worker."""
        batch = _Batch(tag)
        self._batches.append(batch)
        if self._plan.spread:
            payload = _wire.encode(("spread", _wire.ship_batch(records)))
            self._shared.append(_Task(batch, False, 0, payload, len(records), self._limits[0]))
        else:
            self._first_done(batch, ChainResult(list(records)))
        self._dispatch()

    def ready(self, timeout: float) -> list[Done]:
        """Batches done at the head of the queue, waiting up to ``timeout`` for the head."""
        deadline = time.monotonic() + timeout
        while True:
            self._pump(max(0.0, deadline - time.monotonic()))
            if (self._batches and self._batches[0].done) or time.monotonic() >= deadline:
                break
        handed: list[Done] = []
        while self._batches and self._batches[0].done:
            handed.append(self._hand_back(self._batches.popleft()))
        return handed

    def delivered(self, done: Done) -> None:
        """Every sink took the batch: its per-key state is the checkpointable one."""
        for stage, states in (done.key_states or {}).items():
            self._delivered_keyed.setdefault(stage, {}).update(states)

    def checkpoint_state(self) -> dict[str, bytes | None]:
        """The per-key state of partitioned aggregates, as of the last delivered batch."""
        return dict(dump_keyed(self._delivered_keyed)) if self._plan.partitioned else {}

    def _hand_back(self, batch: _Batch) -> Done:
        def compute() -> ChainResult:
            if batch.error is not None:
                raise batch.error
            assert batch.first is not None
            # The driver's plugins hold the delivered state; the runner rolls it back on failure.
            for stage in self._stages:
                if stage.id in batch.states:
                    put_state(stage.plugin, batch.states[stage.id])
            if batch.open_parts < 0:
                return batch.first
            second = merge(
                [batch.parts[p] for p in sorted(batch.parts)], self._plan.steps - self._plan.split
            )
            return join(batch.first, second, self._plan.split)

        return Done(batch.tag, compute, batch.keyed)

    # -- scheduling ---------------------------------------------------------

    def _first_done(self, batch: _Batch, result: ChainResult) -> None:
        batch.first = result
        if not result.ok or not self._plan.serial:
            batch.done = True
        self._start_serial()

    def _start_serial(self) -> None:
        """Start the serial part of the oldest batch waiting for it, when none is running."""
        if self._serial_busy:
            return
        for batch in self._batches:
            if batch.done or batch.open_parts >= 0:
                continue
            if batch.first is None:
                return  # source order: a later batch may not overtake it
            self._serial_tasks(batch)
            return

    def _serial_tasks(self, batch: _Batch) -> None:
        assert batch.first is not None
        split = self._plan.split
        steps = {i - split: self._stages[i].id for i in self._plan.carried if i >= split}
        parts: dict[int, Sequence[Record]] = {}
        if self._plan.partitioned:
            by_partition: dict[int, list[Record]] = {}
            for record in batch.first.outputs:
                by_partition.setdefault(partition_of(record.key, self._n), []).append(record)
            parts.update(by_partition)
        else:
            parts[0] = batch.first.outputs
        batch.open_parts = len(parts)
        if not parts:
            batch.done = True
            self._start_serial()
            return
        self._serial_busy = True
        for part, records in parts.items():
            if self._plan.partitioned:
                keys = {r.key for r in records}
                by_key: dict[int, dict[bytes | None, bytes | None]] | None = {
                    step: {k: v for k, v in self._keyed.get(stage, {}).items() if k in keys}
                    for step, stage in steps.items()
                }
                states: dict[int, bytes | None] = {}
            else:
                by_key = None
                states = {step: self._states.get(stage) for step, stage in steps.items()}
            payload = _wire.encode(("serial", _wire.frame_records(records), states, by_key))
            task = _Task(batch, True, part, payload, len(records), self._limits[1])
            self._pinned[part % self._n].append(task)

    def _serial_done(self, task: _Task, result: ChainResult, reply: tuple[Any, ...]) -> None:
        batch = task.batch
        _, _, after, after_by_key = reply
        split = self._plan.split
        steps = {i - split: self._stages[i].id for i in self._plan.carried if i >= split}
        batch.parts[task.part] = result
        for step, state in after.items():
            self._states[steps[step]] = state
            batch.states[steps[step]] = state
        for step, states in after_by_key.items():
            self._keyed.setdefault(steps[step], {}).update(states)
            batch.keyed.setdefault(steps[step], {}).update(states)
        batch.open_parts -= 1
        if batch.open_parts == 0:
            batch.done = True
            self._serial_busy = False
            self._start_serial()

    def _fail(self, batch: _Batch, error: PipelineError) -> None:
        batch.error = error
        batch.done = True
        self._failed = True  # the run ends at this batch: start no more work
        if batch.open_parts > 0:
            batch.open_parts = 0
            self._serial_busy = False  # the run fails at this batch; later ones never reach sinks

    def _dispatch(self) -> None:
        if self._failed:
            return
        for slot in range(self._n):
            if slot in self._busy:
                continue
            queue = self._pinned[slot] if self._pinned[slot] else self._shared
            if not queue:
                continue
            if slot in self._dead:
                self._spawn_again(slot)
            task = queue.popleft()
            self._backend.send(slot, task.payload)
            self._busy[slot] = (task, time.monotonic() + task.limit_s + _GRACE_S)

    def _pump(self, timeout: float) -> None:
        self._dispatch()
        if not self._busy:
            return
        soonest = min(deadline for _, deadline in self._busy.values())
        wait_s = max(0.0, min(timeout, soonest - time.monotonic()))
        for slot, answer in self._backend.wait(list(self._busy), wait_s):
            task, _ = self._busy.pop(slot)
            if answer is None:
                self._died(slot, task)
            else:
                self._answered(slot, task, _wire.decode(answer))
        now = time.monotonic()
        for slot, (task, deadline) in list(self._busy.items()):
            if now >= deadline:
                del self._busy[slot]
                self._backend.kill(slot)
                self._respawn(slot)
                self._fail(
                    task.batch,
                    PipelineError(
                        f"a batch ran past its processors' time limit ({task.limit_s:g} s) in "
                        f"worker-{slot + 1}: the worker was killed and replaced; raise "
                        "time_limit_s if the plugin needs longer"
                    ),
                )
        self._dispatch()

    def _answered(self, slot: int, task: _Task, reply: tuple[Any, ...]) -> None:
        if reply[0] == "error":
            self._fail(task.batch, PipelineError(f"worker-{slot + 1}: {reply[1]}"))
            return
        if reply[0] == "source-error":
            # A line the source left for the worker to check (LineRecords) is the source's
            # failure, worded as the source words it; the runner's tag names the source.
            source = getattr(task.batch.tag, "source", "?")
            self._fail(task.batch, PipelineError(f"source {source!r} failed: {reply[1]}"))
            return
        result = _wire.to_result(reply[1])
        self.worker_stats[slot].add(
            records_in=task.records, records_out=len(result.outputs), errored=sum(
                s.errored for s in result.steps
            )
        )
        if task.batch.error is not None:
            return
        if task.serial:
            self._serial_done(task, result, reply)
        else:
            self._first_done(task.batch, result)

    def _died(self, slot: int, task: _Task) -> None:
        task.attempts += 1
        log.warning(
            "worker-%d died with a batch of %d record(s) in flight: restarting it, retrying "
            "the batch", slot + 1, task.records
        )
        self._respawn(slot)
        if task.attempts >= MAX_ATTEMPTS:
            self._fail(
                task.batch,
                PipelineError(
                    f"the worker running a batch died {task.attempts} times (a plugin that "
                    "crashes its process?); the batch was not written"
                ),
            )
            return
        # Serial tasks stay with their partition's worker; spread ones go to whoever is free.
        (self._pinned[task.part % self._n] if task.serial else self._shared).appendleft(task)

    def _respawn(self, slot: int) -> None:
        # Started when next needed: a failing run ends without waiting for a new worker.
        self._dead.add(slot)

    def _spawn_again(self, slot: int) -> None:
        self._dead.discard(slot)
        self.restarts[slot] += 1
        self.worker_stats[slot].restarts += 1
        where = self._backend.spawn(slot)
        self.worker_stats[slot].kind = (
            f"{self.name} {where}, {self.restarts[slot]} restart(s)"
        )
