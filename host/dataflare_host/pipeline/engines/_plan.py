"""Which processors spread across workers, and running a part of the chain on a batch.

A chain splits in two at its first *stateful* step (an aggregate, a plugin
that declares state (``state=dataflare.KeyedState(...)``), one set
``stateful: true`` in YAML, or one pinned with ``workers: 1``):

- the **spread** part before it keeps nothing between batches, so any free
  worker runs it, several batches at once;
- the **serial** part from there on runs one batch at a time, in source order.
  It runs in one worker, unless every stateful step in it says
  ``partition_by: key``: then records are grouped by key, each key hashes to
  one of the workers, and each key's accumulators (and declared states) are
  its own.

State (an aggregate's accumulator, a snapshot of a plugin's declared state)
stays with the driver and travels with each task (only the keys a batch
touches), so a worker that dies takes no state with it and a retried batch
starts from exactly the state it started from before.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import attrs

from dataflare import PluginKind, ProcessingError, Record
from dataflare.runtime import BatchResult
from dataflare_host.pipeline._assemble import ProcessorStage
from dataflare_host.pipeline._config import ProcessorConfig
from dataflare_host.plugins._chain import Chain, ChainResult, OnError, StepReport
from dataflare_host.plugins._interface import Plugin

__all__ = [
    "KeyStates",
    "Plan",
    "carried_state",
    "merge",
    "partition_of",
    "put_state",
    "run_part",
]

KeyStates = dict[str, dict[bytes | None, bytes | None]]
"""Per partitioned stateful step (stage id): each key's state (see :func:`carried_state`)."""


def carried_state(plugin: Plugin) -> bytes | None:
    """The state of ``plugin`` that travels between batches: an aggregate's accumulator,
    or a snapshot of a plugin's declared state."""
    if plugin.kind is PluginKind.AGGREGATE:
        return plugin.accumulator
    return plugin.snapshot_state()


def put_state(plugin: Plugin, state: bytes | None) -> None:
    """Set what :func:`carried_state` returned (None: the initial or empty state)."""
    if plugin.kind is PluginKind.AGGREGATE:
        plugin.accumulator = state
    else:
        plugin.restore_state(state)


@attrs.frozen
class Plan:
    """Where the chain splits: steps ``[0, split)`` spread, ``[split, steps)`` run serially."""

    steps: int
    split: int
    partitioned: bool
    carried: tuple[int, ...]
    """Indexes of the steps whose state travels with serial tasks: aggregates and
    plugins that declare state (see :func:`carried_state`)."""

    @classmethod
    def of(
        cls,
        configs: Sequence[ProcessorConfig],
        kinds: Sequence[PluginKind],
        declared: Sequence[bool] | None = None,
    ) -> Plan:
        """The plan for processors with these configs and (loaded) plugin kinds;
        ``declared`` says which plugins declare state (none when not given)."""
        declared = list(declared) if declared is not None else [False] * len(kinds)
        stateful = [
            kind is PluginKind.AGGREGATE
            or has_state
            or bool(config.stateful)
            or config.workers == "1"
            or config.look_back is not None
            for config, kind, has_state in zip(configs, kinds, declared, strict=True)
        ]
        split = stateful.index(True) if True in stateful else len(stateful)
        partitioned = split < len(stateful) and all(
            config.partition_by == "key"
            for config, is_stateful in zip(configs[split:], stateful[split:], strict=True)
            if is_stateful
        )
        carried = tuple(
            i
            for i, (kind, has_state) in enumerate(zip(kinds, declared, strict=True))
            if kind is PluginKind.AGGREGATE or has_state
        )
        return cls(len(stateful), split, partitioned, carried)

    @classmethod
    def of_stages(cls, stages: Sequence[ProcessorStage]) -> Plan:
        """The plan for loaded processor stages."""
        return cls.of(
            [s.config for s in stages],
            [s.plugin.kind for s in stages],
            [s.plugin.state_bounds is not None for s in stages],
        )

    @property
    def spread(self) -> bool:
        """Whether any step runs in any free worker."""
        return self.split > 0

    @property
    def serial(self) -> bool:
        """Whether some steps run one batch at a time."""
        return self.split < self.steps


def partition_of(key: bytes | None, partitions: int) -> int:
    """The partition (worker) that owns ``key``: stable across runs and processes."""
    return 0 if key is None else zlib.crc32(key) % partitions


def run_part(
    plugins: Sequence[Plugin],
    on_error: Sequence[OnError],
    records: Sequence[Record],
    *,
    states: dict[int, bytes | None] | None = None,
    by_key: dict[int, dict[bytes | None, bytes | None]] | None = None,
    first: BatchResult | None = None,
) -> tuple[ChainResult, dict[int, bytes | None], dict[int, dict[bytes | None, bytes | None]]]:
    """Run ``plugins`` (a part of the chain) over ``records``.

    ``states`` maps a step (index within ``plugins``) to the state it starts
    from (:func:`carried_state`); ``by_key`` does the same per key, and then each
    key's records (in source order) run through the part on their own. Returns
    the result and the states after the batch, in the same shape as given.
    ``first`` is the first step's result on ``records``, when already known
    (not with ``by_key``).
    """
    chain = Chain(plugins, on_error)
    if by_key is None:
        for step, state in (states or {}).items():
            put_state(plugins[step], state)
        result = chain.process(records, first)
        after = {step: carried_state(plugins[step]) for step in (states or {})}
        return result, after, {}
    groups: dict[bytes | None, list[Record]] = {}
    for record in records:
        groups.setdefault(record.key, []).append(record)
    assert first is None, "a keyed part runs key by key: its first step cannot have begun"
    results: list[ChainResult] = []
    new_by_key: dict[int, dict[bytes | None, bytes | None]] = {step: {} for step in by_key}
    for key, group in groups.items():
        for step, keyed in by_key.items():
            put_state(plugins[step], keyed.get(key))
        results.append(chain.process(group))
        for step in by_key:
            new_by_key[step][key] = carried_state(plugins[step])
    return merge(results, len(plugins)), {}, new_by_key


def merge(results: Sequence[ChainResult], steps: int) -> ChainResult:
    """Results of parts of one batch (key groups, partitions) as one: outputs in order,
    counts summed per step, the first error kept."""
    outputs: list[Record] = []
    error: ProcessingError | None = None
    failed_step: int | None = None
    ran = 0
    for result in results:
        outputs.extend(result.outputs)
        ran = max(ran, len(result.steps))
        if result.error is not None and error is None:
            error, failed_step = result.error, result.step
    reports = []
    for step in range(min(ran, steps)):
        parts = [r.steps[step] for r in results if step < len(r.steps)]
        reports.append(
            StepReport(
                sum(p.records_in for p in parts),
                sum(p.records_out for p in parts),
                [failure for p in parts for failure in p.failures],
                sum(p.unprocessed for p in parts),
                sum(p.seconds for p in parts),
            )
        )
    return ChainResult(outputs, error, failed_step, reports)


def join(first: ChainResult, second: ChainResult | None, offset: int) -> ChainResult:
    """The spread part's result followed by the serial part's (whose steps start at
    ``offset``): one result for the whole chain."""
    if second is None:
        return first
    step = second.step + offset if second.step is not None else None
    return ChainResult(second.outputs, second.error, step, [*first.steps, *second.steps])
