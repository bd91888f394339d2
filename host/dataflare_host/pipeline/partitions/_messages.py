"""What the driver and a partition worker tell each other (pickled: a pipe or Ray).

The driver gives a worker a :class:`Task` (partitions and where each resumes);
the worker answers with a :class:`Report` each time its run checkpoints, and a
last one when the run ends.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from dataflare_host.connectors import Backlog, Position

__all__ = ["Counts", "LogLine", "Report", "Task"]

Counts = tuple[int, int, int, int]
"""A stage's records in, out, filtered and errored, since its task began."""


@attrs.frozen
class Task:
    """Read ``partitions`` of the pipeline's source (id ``source``), each resuming at
    ``at`` (None: from its start), through the chain into the sinks."""

    number: int
    source: str
    partitions: tuple[str, ...]
    at: Mapping[str, Position | None]


@attrs.frozen
class Report:
    """Task ``task``'s worker checkpointed: every sink holds what came before ``at`` (each
    of its partitions' position), ``backlog`` is what its source has left to read.
    ``status`` is set on the last report: ``completed`` (the partitions were read to
    their end), ``stopped`` or ``failed`` (``error``)."""

    task: int
    at: Mapping[str, Position | None]
    counts: Mapping[str, Counts]
    backlog: Backlog | None = None
    status: str | None = None
    error: str | None = None


@attrs.frozen
class LogLine:
    """A line a worker logged: the driver logs it again, so that every line a run writes
    goes through the driver's handlers (its format: text or JSON) and its level."""

    level: int
    logger: str
    message: str
