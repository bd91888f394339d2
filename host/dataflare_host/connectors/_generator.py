"""Synthetic records for demos and benchmarks, deterministic by index."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from typing import Literal

import attrs

from dataflare import ConfigurationError, Record

from ._base import Position, Source, SourceBatch

__all__ = ["GeneratorSource"]

_STATUSES = ("active", "paused", "deleted")


@attrs.frozen
class GeneratorConfig:
    """``connection:`` of the generator source.

    ``count`` records (None: endless), ``shape`` ``json`` (~100-byte objects with
    id, status, name, amount, tags) or ``text``; ``rate`` caps records per
    second (None: as fast as asked).
    """

    count: int | None = 1000
    shape: Literal["json", "text"] = "json"
    rate: float | None = None
    start_timestamp_ms: int = 1_700_000_000_000


def generated_value(index: int, shape: str = "json") -> bytes:
    """The value the generator emits at ``index`` (tests compute expectations with it)."""
    if shape == "text":
        return f"line {index} status={_STATUSES[index % 3]}".encode()
    document = {
        "id": index,
        "status": _STATUSES[index % 3],
        "name": f"user-{index:06d}",
        "amount": index % 100,
        "tags": ["a", "b"][: index % 3],
    }
    return json.dumps(document, separators=(",", ":")).encode()


class GeneratorSource(Source):
    """Records 0, 1, 2, ...; resumes at the index after the checkpoint."""

    Config = GeneratorConfig

    def __init__(self, config: GeneratorConfig, params: Mapping[str, str]) -> None:
        if config.count is not None and config.count < 0:
            raise ConfigurationError(
                f"count must be 0 or more (or null for endless), got {config.count}",
                setting="count",
            )
        if config.rate is not None and not (math.isfinite(config.rate) and config.rate > 0):
            raise ConfigurationError(
                f"rate must be a positive number of records per second, got {config.rate}",
                setting="rate",
            )
        super().__init__(config, params)
        self._next = 0
        self._started = time.monotonic()

    def describe_position(self, position: Position) -> str:
        """``skipping N record(s) already delivered``: the next index is the count."""
        return f"skipping {int(position['next']):,} record(s) already delivered"

    def connect(self, position: Position | None) -> None:
        self._next = int(position["next"]) if position else 0
        self._started = time.monotonic()
        self._first = self._next

    def read(self, max_records: int, timeout_s: float) -> SourceBatch | None:
        config = self.config
        end = self._next + max_records
        if config.count is not None:
            if self._next >= config.count:
                return None
            end = min(end, config.count)
        if config.rate:
            # Never run ahead of the rate: emit what is due, waiting at most timeout_s.
            due = self._first + int((time.monotonic() - self._started) * config.rate)
            if due <= self._next:
                time.sleep(min(timeout_s, 1 / config.rate))
                due = self._first + int((time.monotonic() - self._started) * config.rate)
            end = min(end, max(due, self._next))
        records = [
            Record(
                generated_value(i, config.shape),
                str(i).encode(),
                config.start_timestamp_ms + i,
                None,
                i,
            )
            for i in range(self._next, end)
        ]
        self._next = end
        return SourceBatch(records, {"next": self._next})
