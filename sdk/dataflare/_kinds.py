"""The kinds of plugin and what each one's function looks like."""

from __future__ import annotations

import enum

__all__ = ["AggregateEmit", "PluginKind"]


class PluginKind(enum.StrEnum):
    """What a plugin function does with each record (Fluvio SmartModule kinds)."""

    FILTER = "filter"
    """``(record[, context]) -> bool``: keep the record when True."""
    MAP = "map"
    """``(record[, context]) -> Record``: replace the record."""
    FILTER_MAP = "filter_map"
    """``(record[, context]) -> Record | None``: replace it, or drop it with None."""
    ARRAY_MAP = "array_map"
    """``(record[, context]) -> Iterable[Record]``: replace it with 0..N records."""
    AGGREGATE = "aggregate"
    """``(accumulator, record[, context]) -> bytes``: fold the stream into bytes."""

    def __str__(self) -> str:
        return self.value


class AggregateEmit(enum.StrEnum):
    """When an aggregate emits its accumulator."""

    EACH = "each"
    """After every record, as Fluvio's running fold does (the default)."""
    BATCH = "batch"
    """Once per batch, after its last record (fluvio #1911)."""

    def __str__(self) -> str:
        return self.value
