"""What lets a pipeline read a source in its workers: partitions, and sinks many may write.

A :class:`PartitionedSource` splits its input into named partitions (a glob's
files, a topic's partitions), each resumable on its own; a worker reads the
partitions the driver gives it, runs the chain and writes to the sinks itself.
Its sinks must take that: a :class:`SplitSink` writes one target per partition
(a file sink whose path holds ``{partition}``), a :class:`SharedSink` takes
concurrent writers as it is (a Kafka topic, a PostgreSQL upsert, an index).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import attrs

from ._base import Position

__all__ = [
    "PARTITION_FIELD",
    "PartitionPositions",
    "PartitionedSource",
    "SharedSink",
    "SplitSink",
]

PARTITION_FIELD = "{partition}"
"""What a file sink's ``path`` holds to be written one file per partition."""


@runtime_checkable
class PartitionedSource(Protocol):
    """A source whose input is split into partitions, each read and resumed on its own."""

    def partitions(self) -> list[str]:
        """The partitions' names, in a stable order (may ask a server: a topic's metadata)."""

    def partitions_end(self) -> bool:
        """True when every partition ends (files; a topic read ``stop_when_caught_up``):
        a worker then takes partitions one at a time, the next when it finished one."""

    def restrict(self, names: Sequence[str]) -> None:
        """Before :meth:`~dataflare_host.connectors.Source.connect`: read only ``names``."""

    def split_position(self, position: Position | None) -> PartitionPositions:
        """A position this source took reading in one process, as each partition's;
        raises :class:`dataflare.PluginError` for one that is not this source's."""

    def join_positions(self, positions: PartitionPositions) -> Position:
        """Partitions' positions as one position for reading in one process
        (:meth:`split_position`'s inverse); raises :class:`dataflare.PluginError` when
        one position cannot say where every partition is."""


@runtime_checkable
class SplitSink(Protocol):
    """A sink that writes each partition to its own target (a file per partition)."""

    def splits(self) -> bool:
        """True when this sink is configured to write one target per partition."""

    def for_partition(self, name: str) -> None:
        """Before ``connect``: write partition ``name``'s target."""


@runtime_checkable
class SharedSink(Protocol):
    """A sink that several workers may write at once, each its own partitions' records."""

    def takes_concurrent_writers(self) -> bool:
        """True when writers in several processes do not disturb each other."""

    def write_for(self, partitions: Sequence[str]) -> None:
        """Write as the one writer of ``partitions`` (a worker's task), told before the sink
        connects: a transactional sink takes a transactional id of its own for them."""


@attrs.frozen
class PartitionPositions:
    """Where each partition of a source resumes, as a pipeline reading them in workers
    checkpoints it: ``at`` each partition's position (None: from its start), ``ended``
    the partitions read to their end."""

    at: Mapping[str, Position | None]
    ended: frozenset[str] = frozenset()

    KEY: ClassVar[str] = "partitions"

    def to_json(self) -> dict[str, Any]:
        """The checkpoint's form: ``{"partitions": {...}, "ended": [...]}``."""
        return {self.KEY: dict(self.at), "ended": sorted(self.ended)}

    @classmethod
    def from_json(cls, value: Any) -> PartitionPositions | None:
        """The positions ``value`` holds in :meth:`to_json`'s form, else None (a position
        a source took reading in one process)."""
        if not (isinstance(value, dict) and set(value) == {cls.KEY, "ended"}):
            return None
        at, ended = value[cls.KEY], value["ended"]
        if not isinstance(at, dict) or not isinstance(ended, list):
            return None
        return cls({str(k): v for k, v in at.items()}, frozenset(str(e) for e in ended))
