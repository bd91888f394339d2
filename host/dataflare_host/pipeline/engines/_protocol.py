"""What the pipeline runner asks of an engine: batches in, results out in submission order."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import attrs

from dataflare import Record
from dataflare_host.connectors import Source
from dataflare_host.pipeline._stats import StageStats
from dataflare_host.plugins._chain import ChainResult

__all__ = ["DefersRecords", "Done", "Engine"]


@runtime_checkable
class DefersRecords(Protocol):
    """A source that can hand over batches whose records are made where they are used
    (a file source's lines: see :class:`~dataflare_host.connectors.LineRecords`)."""

    def defer_records(self) -> None:
        """From now on, leave making (and checking) records to whoever uses them."""


@attrs.define
class Done:
    """A batch the chain has finished with, handed back in submission order.

    :meth:`result` gives the chain's result (or raises the batch's failure) and
    sets the driver's plugins' accumulators to their state after this batch; the
    runner calls it inside its roll-back scope and, once every sink took the
    batch, :meth:`Engine.delivered`.
    """

    tag: Any
    compute: Callable[[], ChainResult]
    key_states: Any = None
    """Per-key state after this batch (engine-private; applied by :meth:`Engine.delivered`)."""

    def result(self) -> ChainResult:
        """The chain's result for this batch (raises PluginError when the batch failed)."""
        return self.compute()


class Engine(Protocol):
    """Runs the processor chain over batches; sources, sinks and checkpoints stay with the
    caller. Results come back in submission order, so sinks see source order."""

    name: str
    """``in-process``, ``local`` (worker processes) or ``ray``."""

    worker_stats: list[StageStats]
    """One counter per worker (empty when the chain runs in the caller's process)."""

    def start(self, saved: Mapping[str, bytes | None]) -> None:
        """Start the workers; ``saved`` is the checkpoint's state, accumulators and declared
        plugin states in one mapping (for partitioned steps)."""

    def adopt_sources(self, sources: Sequence[Source]) -> None:
        """Before the first batch: let sources leave per-record work to the engine's
        workers (:class:`DefersRecords`); an engine without workers leaves them alone."""

    def submit(self, tag: Any, records: Sequence[Record]) -> None:
        """Queue a batch; ``tag`` comes back with its :class:`Done`."""

    def ready(self, timeout: float) -> list[Done]:
        """Finished batches at the head of the queue, waiting up to ``timeout`` for one."""

    @property
    def pending(self) -> int:
        """Batches submitted and not yet handed back."""

    @property
    def full(self) -> bool:
        """True when no more batches should be submitted before some come back."""

    def delivered(self, done: Done) -> None:
        """Every sink took ``done``'s outputs: its state is now the checkpointable one."""

    def checkpoint_state(self) -> dict[str, bytes | None]:
        """Per-key state of partitioned steps (``<id>#by_key``), accumulators and declared
        plugin states alike, as of the last delivered batch."""

    def summary(self) -> str:
        """The engine and its workers, for the run summary."""

    def close(self) -> None:
        """Stop every worker (safe to call twice)."""
