"""The chain in the driver's own process: the default for ``workers: 1``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from dataflare import Record
from dataflare.runtime import BatchResult
from dataflare_host.connectors import Source
from dataflare_host.pipeline._assemble import ProcessorStage
from dataflare_host.pipeline._stats import StageStats
from dataflare_host.pipeline.engines._keyed import dump_keyed, load_keyed
from dataflare_host.pipeline.engines._plan import Plan, join, run_part
from dataflare_host.pipeline.engines._protocol import Done
from dataflare_host.plugins._chain import ChainResult, OnError
from dataflare_host.plugins._interface import Begun

__all__ = ["InProcessEngine"]


@attrs.define
class _Queued:
    done: Done
    records: list[Record]
    begun: Begun | None = None


class InProcessEngine:
    """Runs each batch when the runner asks for its result, on the driver's own plugins
    (so hot reload swaps what runs). ``partition_by: key`` keeps one accumulator (or
    declared state) per key; unpartitioned declared state lives in the plugin itself.

    A first step that runs elsewhere (a WASM plugin, in its sandbox process) is
    begun ahead: the next batch is encoded as soon as it is read and sent at
    once, to an idle instance or queued in a busy one's sandbox process (which
    starts it the moment it answers the one before), so the guest works on it
    while this thread runs the rest of the chain and the sinks on this one (the
    two overlap on two cores instead of taking turns). With ``instances: N`` up
    to 2N batches are out at once, each whole on one instance.
    """

    name = "in-process"

    def __init__(self, stages: Sequence[ProcessorStage]) -> None:
        self._stages = stages
        self._plan = Plan.of_stages(stages)
        self._keyed: dict[str, dict[bytes | None, bytes | None]] = {}
        self._queue: list[_Queued] = []
        self.worker_stats: list[StageStats] = []

    def start(self, saved: Mapping[str, bytes | None]) -> None:
        """Load per-key state of partitioned aggregates from the checkpoint."""
        if self._plan.partitioned:
            self._keyed = load_keyed(saved, self._keyed_ids())

    def _keyed_ids(self) -> list[str]:
        return [self._stages[i].id for i in self._plan.carried if i >= self._plan.split]

    def adopt_sources(self, sources: Sequence[Source]) -> None:
        """Nothing to hand over: the chain runs where the sources are read."""

    def submit(self, tag: Any, records: Sequence[Record]) -> None:
        """Queue a batch and begin it: sent at once when the first step is free, else
        encoded now and sent when the batch before it is answered (see the class)."""
        queued = _Queued(Done(tag, _not_yet), list(records))
        queued.done.compute = lambda: self._run(queued)
        # A keyed first step runs key by key: nothing of it can start on the whole batch.
        if self._stages and (self._plan.split > 0 or not self._plan.partitioned):
            queued.begun = self._stages[0].plugin.begin(queued.records)
        self._queue.append(queued)

    def _run(self, queued: _Queued) -> ChainResult:
        first = queued.begun.result() if queued.begun is not None else None
        # The next batches go to the guest while this one finishes here; after a failed
        # record the first step runs again on the rest of this batch, so they wait.
        early = first is None or first.error is None
        if early:
            self._start_queued()
        result = self._chain(queued, first)
        if not early:
            self._start_queued()
        return result

    def _start_queued(self) -> None:
        # Each sends if its plugin has an instance free; in order, so batches go out as read.
        for waiting in self._queue:
            if waiting.begun is not None:
                waiting.begun.start()

    def _chain(self, queued: _Queued, first: BatchResult | None) -> ChainResult:
        records = queued.records
        plugins = [s.plugin for s in self._stages]
        on_error: list[OnError] = [
            "stop" if s.config.on_error == "fail" else "continue" for s in self._stages
        ]
        if not self._plan.partitioned:
            return run_part(plugins, on_error, records, first=first)[0]
        split = self._plan.split
        first_part, _, _ = run_part(plugins[:split], on_error[:split], records, first=first)
        if not first_part.ok:
            return first_part
        steps = {i - split: self._stages[i].id for i in self._plan.carried if i >= split}
        by_key = {step: dict(self._keyed.get(stage, {})) for step, stage in steps.items()}
        second, _, after = run_part(
            plugins[split:], on_error[split:], first_part.outputs, by_key=by_key
        )
        queued.done.key_states = {steps[step]: states for step, states in after.items()}
        return join(first_part, second, split)

    def ready(self, timeout: float) -> list[Any]:
        """The batch at the head of the queue, unless its first step is still running
        elsewhere and the queue has room (then the runner reads on)."""
        if not self._queue:
            return []
        head = self._queue[0]
        if head.begun is not None and not self.full and not head.begun.answered(timeout):
            return []
        return [self._queue.pop(0).done]

    @property
    def pending(self) -> int:
        """Batches queued and not handed back."""
        return len(self._queue)

    @property
    def full(self) -> bool:
        """With as many batches out as the first step runs at once (its WASM
        ``instances``; else one) and one more waiting: hand one back before reading more."""
        ahead = self._stages[0].plugin.concurrent_batches if self._stages else 1
        return len(self._queue) >= 1 + ahead

    def delivered(self, done: Any) -> None:
        """Keep the per-key state of a batch every sink took."""
        for stage, states in (done.key_states or {}).items():
            self._keyed.setdefault(stage, {}).update(states)

    def checkpoint_state(self) -> dict[str, bytes | None]:
        """The per-key state of partitioned aggregates."""
        return dict(dump_keyed(self._keyed)) if self._plan.partitioned else {}

    def summary(self) -> str:
        """One line for the run summary."""
        return "engine in-process, 1 worker (the driver)"

    def close(self) -> None:
        """Abandon batches begun and never handed back (a stopping pipeline's)."""
        queued, self._queue = self._queue, []
        for each in queued:
            if each.begun is not None:
                each.begun.cancel()


def _not_yet() -> ChainResult:
    raise AssertionError("a batch's result is computed by its engine")
