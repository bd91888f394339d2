"""The live progress display of ``dataflare run`` (rich), and its end-of-run summary."""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.console import Console
from rich.live import Live
from rich.table import Table

from dataflare_host._text import one_line
from dataflare_host.pipeline._runner import RunSummary
from dataflare_host.pipeline._stats import StageStats

__all__ = ["RichProgress", "summary_table"]


def summary_table(stats: Sequence[StageStats], title: str) -> Table:
    """One row per stage: records in, out, filtered, errored, and the rate."""
    table = Table(title=title, title_justify="left")
    for column in ("stage", "role", "kind", "in", "out", "filtered", "errored", "rec/s"):
        table.add_column(
            column, justify="right" if column not in ("stage", "role", "kind") else "left"
        )
    for stage in stats:
        reloads = f" (reloaded x{stage.reloads})" if stage.reloads else ""
        table.add_row(
            stage.stage + reloads,
            stage.role,
            stage.kind,
            "" if stage.role == "source" else f"{stage.records_in:,}",
            f"{stage.records_out:,}",
            f"{stage.filtered:,}",
            f"{stage.errored:,}",
            f"{stage.rate():,.0f}",
        )
    return table


class RichProgress:
    """Redraws the stage table in place on a terminal; on a pipe, prints it every few seconds."""

    def __init__(self, name: str, console: Console | None = None, every_s: float = 5.0) -> None:
        self.name = name
        self.console = console or Console(stderr=True)
        if not self.console.is_terminal:
            # Piped or logged output: do not squeeze stage names into 80 columns.
            self.console.width = max(self.console.width, 110)
        self._every = every_s
        self._last_print = time.monotonic()
        self._live: Live | None = None
        if self.console.is_terminal:
            self._live = Live(console=self.console, refresh_per_second=4, transient=True)
            self._live.start()

    def update(self, stats: Sequence[StageStats]) -> None:
        """Show the current counters."""
        table = summary_table(stats, f"{self.name}: running")
        if self._live is not None:
            self._live.update(table)
        elif time.monotonic() - self._last_print >= self._every:
            self.console.print(table)
            self._last_print = time.monotonic()

    def finish(self, summary: RunSummary) -> None:
        """Replace the live table by the final summary."""
        if self._live is not None:
            self._live.stop()
        resumed = ", resumed from checkpoint" if summary.resumed else ""
        self.console.print(
            summary_table(
                summary.stats,
                f"{summary.name}: {summary.status} in {summary.seconds:.1f} s{resumed}",
            )
        )
        if summary.error:
            # One unwrapped line, like every other error the CLI prints.
            self.console.file.write(f"error: {one_line(summary.error)}\n")
            self.console.file.flush()
