"""An ordered list of plugins applied to a batch: Fluvio's ``transforms:`` chain."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import TracebackType

import attrs

from sdk import ProcessingError, Record

from ._plugin import Plugin

__all__ = ["Chain", "ChainResult"]


@attrs.frozen
class ChainResult:
    """What a chain made of a batch.

    ``outputs`` went through every step. When a step failed, ``error`` is its
    error and ``step`` its position (0-based) in the chain; the outputs are then
    those of the input records before the failing one.
    """

    outputs: list[Record]
    error: ProcessingError | None = None
    step: int | None = None

    @property
    def ok(self) -> bool:
        """True when every step processed every record."""
        return self.error is None


class Chain:
    """Plugins applied in order, each to the previous one's outputs.

    A step that fails stops the chain at that record: the later steps still run
    on what it produced before the failure, and the error names the step.
    """

    def __init__(self, plugins: Iterable[Plugin]) -> None:
        self.plugins = list(plugins)

    def process(self, records: Sequence[Record]) -> ChainResult:
        """Run every step over ``records``; report the first failing step."""
        batch: Sequence[Record] = records
        error: ProcessingError | None = None
        failed_step: int | None = None
        for step, plugin in enumerate(self.plugins):
            result = plugin.process(batch)
            batch = result.outputs
            if result.error is not None:
                # A later step failing on these (earlier) records wins: its
                # record comes first in the stream.
                error, failed_step = result.error, step
        return ChainResult(list(batch), error, failed_step)

    def close(self) -> None:
        """Close every plugin in the chain."""
        for plugin in self.plugins:
            plugin.close()

    def __enter__(self) -> Chain:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
