"""The small interfaces every connector implements, and the batch a source returns."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import attrs

from dataflare import Record
from dataflare_host._closing import Closing

__all__ = ["Backlog", "NoConnection", "Position", "Rejected", "Sink", "Source", "SourceBatch"]

Position = Any
"""Where a source resumes: any JSON-serialisable value the source itself defines."""


@attrs.frozen
class SourceBatch:
    """Records read from a source, and the position just after the last of them.

    Checkpointing ``position`` (after every sink flushed these records) makes a
    restarted source resume with the record after them.
    """

    records: Sequence[Record]
    position: Position


@attrs.frozen
class PartitionLag:
    """One partition of a partitioned log: how far behind its end the source is (``lag``,
    in offsets) and the next offset it will read (``position``)."""

    partition: str
    lag: int
    position: int


@attrs.frozen
class Backlog:
    """What a source has not read yet: ``amount`` in ``unit`` (``bytes`` of input files,
    ``offsets`` of a log such as a stream or a topic), and for a partitioned log each
    partition's share (``partitions``). Feeds the lag metrics."""

    amount: int
    unit: Literal["bytes", "offsets"]
    partitions: tuple[PartitionLag, ...] = ()


@attrs.frozen
class Rejected:
    """A record a sink's target refused for good, with the target's reason.

    Refused for good means retrying cannot help (a mapping conflict, a
    malformed document): the pipeline writes it to its ``dead_letter`` sink, or
    fails the run naming it when there is none. ``reason`` must not hold
    credentials (sinks redact them).
    """

    record: Record
    reason: str


@attrs.frozen
class NoConnection:
    """The ``Config`` of a connector that takes no ``connection:`` keys (parameters only)."""


class Source(Closing, abc.ABC):
    """Reads batches of records from somewhere, resumably.

    Lifecycle: ``connect(position)`` once (None: from the start), ``read()``
    until it returns None (a finite source is exhausted) or the pipeline stops,
    ``ack(position)`` after everything up to ``position`` reached every sink,
    ``close()``. ``Config`` is the attrs class the ``connection:`` mapping of
    the pipeline YAML is structured into (unknown keys are errors; the default
    takes none).

    ``PARAMS`` declares the ``params:`` it takes, like a processor's decorator
    (name -> default, None for a required one, ``dataflare.OPTIONAL``): unknown
    and missing names are refused, and ``self.params`` holds them resolved.
    A source plugin is one ``.py`` file defining one subclass, named in YAML by
    ``plugin_path:`` or registered by a ``dataflare.sources`` entry point.
    """

    Config: ClassVar[type] = NoConnection
    PARAMS: ClassVar[Mapping[str, str | None] | None] = None

    def __init__(self, config: Any, params: Mapping[str, str]) -> None:
        self.config = config
        self.params = params

    def check_position(self, position: Position) -> None:
        """Refuse a checkpointed ``position`` this source cannot resume from.

        Called before anything connects, with the position the checkpoint
        holds for this source. Raise a :class:`dataflare.PluginError` saying
        what does not fit (another connector's position, a file that is not
        the one the position was taken in...); the pipeline adds the
        checkpoint file and ``--reset``. The default accepts every position:
        the pipeline also turns a KeyError, TypeError, AttributeError or
        ValueError that ``connect`` raises on a foreign position into that
        same one-line error.
        """

    @abc.abstractmethod
    def connect(self, position: Position | None) -> None:
        """Open the source, resuming after ``position`` when it is not None."""

    @abc.abstractmethod
    def read(self, max_records: int, timeout_s: float) -> SourceBatch | None:
        """Up to ``max_records`` records, waiting at most ``timeout_s`` for the first.

        Returns an empty batch when nothing arrived in time (the source may
        have more later) and None when the source is exhausted for good.
        """

    def ack(self, position: Position) -> None:
        """Everything up to ``position`` reached every sink (Redis XACKs here)."""

    def describe_position(self, position: Position) -> str:
        """Where a checkpointed ``position`` resumes, in a phrase for the line a resumed
        run starts with (``skipping 1,054 record(s) already delivered``)."""
        shown = repr(position)
        return f"resuming after position {shown[:80]}{'...' if len(shown) > 80 else ''}"

    def backlog(self) -> Backlog | None:
        """What is left to read, when the source can tell (None: it cannot).

        Called by the reader after each :meth:`read`, in the thread that reads;
        it must be cheap (no round trip per call).
        """
        return None

    def close(self) -> None:
        """Release connections and files; safe to call twice."""


class Sink(Closing, abc.ABC):
    """Writes batches of records somewhere.

    ``write`` may buffer; after ``flush`` returns, everything written is durable
    (the pipeline checkpoints source positions only then). Writes of the same
    records twice (after a crash) should be harmless where the target allows
    it (an upsert key), since delivery is at least once.

    ``Config`` and ``PARAMS`` are as for :class:`Source`; a sink plugin is one
    ``.py`` file defining one subclass (``plugin_path:``, or a
    ``dataflare.sinks`` entry point).
    """

    Config: ClassVar[type] = NoConnection
    PARAMS: ClassVar[Mapping[str, str | None] | None] = None

    def __init__(self, config: Any, params: Mapping[str, str]) -> None:
        self.config = config
        self.params = params

    def run_starts(self, *, resuming: bool) -> None:
        """Told by the pipeline before :meth:`connect`: whether this run resumes from a
        checkpoint (``False``: a fresh start). The default ignores it; a sink that can
        start over (the file sink's ``mode: overwrite``) uses it."""

    @abc.abstractmethod
    def connect(self) -> None:
        """Open the sink."""

    @abc.abstractmethod
    def write(self, records: Sequence[Record]) -> None:
        """Write (or buffer) records, in order."""

    @abc.abstractmethod
    def flush(self) -> None:
        """Make everything written so far durable."""

    def retries(self) -> int:
        """How many writes this sink retried so far (transient failures it waited out)."""
        return 0

    def take_rejected(self) -> list[Rejected]:
        """Records the target refused since the last call, and forget them.

        The pipeline asks after every ``write`` and every ``flush``; a record
        handed back here counts as delivered (to the dead letter) once the
        ``flush`` that follows returns. The default refuses nothing.
        """
        return []

    def close(self) -> None:
        """Flush what is buffered and release resources; safe to call twice."""
