"""The chain in the driver's own process: the default for ``workers: 1``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dataflare import Record
from dataflare_host.connectors import Source
from dataflare_host.pipeline._assemble import ProcessorStage
from dataflare_host.pipeline._stats import StageStats
from dataflare_host.pipeline.engines._keyed import dump_keyed, load_keyed
from dataflare_host.pipeline.engines._plan import Plan, join, run_part
from dataflare_host.plugins._chain import ChainResult, OnError

__all__ = ["InProcessEngine"]


class InProcessEngine:
    """Runs each batch when the runner asks for its result, on the driver's own plugins
    (so hot reload swaps what runs). ``partition_by: key`` keeps one accumulator (or
    declared state) per key; unpartitioned declared state lives in the plugin itself."""

    name = "in-process"

    def __init__(self, stages: Sequence[ProcessorStage]) -> None:
        self._stages = stages
        self._plan = Plan.of_stages(stages)
        self._keyed: dict[str, dict[bytes | None, bytes | None]] = {}
        self._queue: list[Any] = []
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
        """Queue a batch (it runs when its result is asked for)."""
        from dataflare_host.pipeline.engines._protocol import Done

        batch = list(records)
        done = Done(tag, lambda: ChainResult([]))
        done.compute = lambda: self._run(done, batch)
        self._queue.append(done)

    def _run(self, done: Any, records: list[Record]) -> ChainResult:
        plugins = [s.plugin for s in self._stages]
        on_error: list[OnError] = [
            "stop" if s.config.on_error == "fail" else "continue" for s in self._stages
        ]
        if not self._plan.partitioned:
            return run_part(plugins, on_error, records)[0]
        split = self._plan.split
        first, _, _ = run_part(plugins[:split], on_error[:split], records)
        if not first.ok:
            return first
        steps = {i - split: self._stages[i].id for i in self._plan.carried if i >= split}
        by_key = {step: dict(self._keyed.get(stage, {})) for step, stage in steps.items()}
        second, _, after = run_part(
            plugins[split:], on_error[split:], first.outputs, by_key=by_key
        )
        done.key_states = {steps[step]: states for step, states in after.items()}
        return join(first, second, split)

    def ready(self, timeout: float) -> list[Any]:
        """Every queued batch (each runs when its result is asked for)."""
        queued, self._queue = self._queue, []
        return queued

    @property
    def pending(self) -> int:
        """Batches queued and not handed back."""
        return len(self._queue)

    @property
    def full(self) -> bool:
        """Never: batches run one at a time, in the runner's thread."""
        return False

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
        """Nothing to stop."""
