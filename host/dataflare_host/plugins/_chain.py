"""An ordered list of plugins applied to a batch: Fluvio's ``transforms:`` chain."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Literal

import attrs

from dataflare import PluginKind, ProcessingError, Record
from dataflare.runtime import BatchResult
from dataflare_host._closing import Closing
from dataflare_host.plugins._interface import Plugin

__all__ = ["Chain", "ChainResult", "OnError", "StepReport"]

OnError = Literal["stop", "continue"]
"""What a step does when its plugin fails on a record: stop there, or go on past it."""


@attrs.frozen
class StepReport:
    """What one step did with a batch: counts, and each failure with its record.

    ``records_in`` counts every record the step was given; ``unprocessed`` those
    of them it never ran on because it stopped the chain at an earlier failure;
    ``seconds`` is how long the step's plugin took on the batch (the stage
    latency histograms of ``dataflare run --metrics-port``).
    """

    records_in: int
    records_out: int
    failures: list[tuple[ProcessingError, Record]] = attrs.Factory(list)
    unprocessed: int = 0
    seconds: float = 0.0

    @property
    def errored(self) -> int:
        """How many records failed in this step."""
        return len(self.failures)


@attrs.frozen
class ChainResult:
    """What a chain made of a batch.

    When every step ran (``ok``), ``outputs`` went through all of them. When a
    stopping step failed, the chain ended there, as Fluvio's does: ``error`` is
    that step's error, ``step`` its position (0-based) in the chain, and
    ``outputs`` are *that step's* outputs for the input records before the
    failing one (its partial output); no later step saw them. ``steps`` has one
    report per step that ran: every step, or steps ``0..step`` after a failure.
    """

    outputs: Sequence[Record]
    error: ProcessingError | None = None
    step: int | None = None
    steps: list[StepReport] = attrs.Factory(list)

    @property
    def ok(self) -> bool:
        """True when no stopping step failed."""
        return self.error is None


class Chain(Closing):
    """Plugins applied in order, each to the previous one's outputs.

    Failures follow Fluvio's SmartModule chain. A step whose ``on_error`` is
    ``"stop"`` (the default) that fails on a record ends the whole chain at
    once: the result holds that step's outputs for the records before the
    failing one and its error (naming the step); no later step runs, not even
    on those outputs, so no later aggregate or side effect sees a batch the
    chain failed on. A step whose ``on_error`` is ``"continue"`` records the
    failure with its record and goes on with the records after it, and the later
    steps run on everything it produced: what a pipeline's ``skip`` and
    ``dead_letter`` policies use (the pipeline then drops the failed record or
    writes it to the dead-letter sink; its ``fail`` policy is ``"stop"``).
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

    def process(self, records: Sequence[Record], first: BatchResult | None = None) -> ChainResult:
        """Run the steps over ``records``, ending the chain at a stopping step's failure.

        ``first`` is the first step's result on ``records`` when the caller already
        has it (a batch it began with :meth:`Plugin.begin`).
        """
        batch: Sequence[Record] = records
        reports: list[StepReport] = []
        for step, (plugin, on_error) in enumerate(zip(self.plugins, self.on_error, strict=True)):
            outputs: list[Record] = []
            failures: list[tuple[ProcessingError, Record]] = []
            remaining = batch
            began = time.perf_counter()
            while remaining:
                if first is not None:
                    result, first = first, None
                else:
                    result = plugin.process(remaining)
                outputs.extend(result.outputs)
                if result.error is None:
                    break
                failed_at = min(result.consumed, len(remaining) - 1)
                failures.append((result.error, remaining[failed_at]))
                if on_error == "stop":
                    # Fluvio returns the failing step's partial output and runs
                    # no later step: a later aggregate would otherwise fold, and
                    # a later plugin act on, records of a batch that failed.
                    unprocessed = len(remaining) - failed_at - 1
                    took = time.perf_counter() - began
                    reports.append(
                        StepReport(len(batch), len(outputs), failures, unprocessed, took)
                    )
                    return ChainResult(outputs, result.error, step, reports)
                remaining = remaining[result.consumed + 1 :]
            took = time.perf_counter() - began
            reports.append(StepReport(len(batch), len(outputs), failures, 0, took))
            batch = outputs
        return ChainResult(list(batch), None, None, reports)

    @staticmethod
    def filtered(plugin: Plugin, report: StepReport) -> int:
        """Records a filter-like step dropped (not counting failures or unprocessed records)."""
        if plugin.kind in (PluginKind.FILTER, PluginKind.FILTER_MAP):
            return report.records_in - report.unprocessed - report.errored - report.records_out
        return 0

    def close(self) -> None:
        """Close every plugin in the chain."""
        for plugin in self.plugins:
            plugin.close()
