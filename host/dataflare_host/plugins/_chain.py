"""An ordered list of plugins applied to a batch: Fluvio's ``transforms:`` chain."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import attrs
from dataflare import PluginKind, ProcessingError, Record

from dataflare_host._closing import Closing
from dataflare_host.plugins._interface import Plugin

__all__ = ["Chain", "ChainResult", "OnError", "StepReport"]

OnError = Literal["stop", "continue"]
"""What a step does when its plugin fails on a record: stop there, or go on past it."""


@attrs.frozen
class StepReport:
    """What one step did with a batch: counts, and each failure with its record."""

    records_in: int
    records_out: int
    failures: list[tuple[ProcessingError, Record]] = attrs.Factory(list)

    @property
    def errored(self) -> int:
        """How many records failed in this step."""
        return len(self.failures)


@attrs.frozen
class ChainResult:
    """What a chain made of a batch.

    ``outputs`` went through every step. When a stopping step failed, ``error``
    is its error and ``step`` its position (0-based) in the chain; the outputs
    are then those of the input records before the failing one. ``steps`` has
    one report per step that ran.
    """

    outputs: list[Record]
    error: ProcessingError | None = None
    step: int | None = None
    steps: list[StepReport] = attrs.Factory(list)

    @property
    def ok(self) -> bool:
        """True when no stopping step failed."""
        return self.error is None


class Chain(Closing):
    """Plugins applied in order, each to the previous one's outputs.

    By default a step that fails stops at that record: the later steps still run
    on what it produced before the failure, and the error names the step. A step
    whose ``on_error`` is ``"continue"`` instead records the failure and goes on
    with the records after it (what pipelines' ``skip`` and ``dead_letter`` use).
    """

    def __init__(
        self, plugins: Iterable[Plugin], on_error: Sequence[OnError] | None = None
    ) -> None:
        self.plugins = list(plugins)
        self.on_error: list[OnError] = (
            list(on_error) if on_error is not None else ["stop"] * len(self.plugins)
        )
        if len(self.on_error) != len(self.plugins):
            raise ValueError(
                f"on_error has {len(self.on_error)} entries for {len(self.plugins)} plugins"
            )

    def process(self, records: Sequence[Record]) -> ChainResult:
        """Run every step over ``records``; report the first stopping failure."""
        batch: Sequence[Record] = records
        error: ProcessingError | None = None
        failed_step: int | None = None
        reports: list[StepReport] = []
        for step, (plugin, on_error) in enumerate(zip(self.plugins, self.on_error, strict=True)):
            outputs: list[Record] = []
            failures: list[tuple[ProcessingError, Record]] = []
            remaining = batch
            while remaining:
                result = plugin.process(remaining)
                outputs.extend(result.outputs)
                if result.error is None:
                    break
                failed = remaining[min(result.consumed, len(remaining) - 1)]
                if on_error == "stop":
                    # A later step failing on these (earlier) records wins: its
                    # record comes first in the stream.
                    error, failed_step = result.error, step
                    failures.append((result.error, failed))
                    break
                failures.append((result.error, failed))
                remaining = remaining[result.consumed + 1 :]
            reports.append(StepReport(len(batch), len(outputs), failures))
            batch = outputs
        return ChainResult(list(batch), error, failed_step, reports)

    @staticmethod
    def filtered(plugin: Plugin, report: StepReport) -> int:
        """Records a filter-like step dropped (not counting failures)."""
        if plugin.kind in (PluginKind.FILTER, PluginKind.FILTER_MAP):
            return report.records_in - report.errored - report.records_out
        return 0

    def close(self) -> None:
        """Close every plugin in the chain."""
        for plugin in self.plugins:
            plugin.close()
