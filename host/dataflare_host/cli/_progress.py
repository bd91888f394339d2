"""The live progress display of ``dataflare run`` (rich), and its end-of-run summary."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Sequence

from rich.console import Console
from rich.live import Live
from rich.table import Table

from dataflare_host._text import one_line
from dataflare_host.pipeline._runner import RunSummary
from dataflare_host.pipeline._stats import StageStats

__all__ = [
    "RichProgress",
    "left_to_read",
    "progress_line",
    "summary_table",
    "summary_title",
    "terminal_width",
]


def summary_title(summary: RunSummary, loading_s: float = 0.0) -> str:
    """``name: status in N s`` where N counts loading too (builds and compiles included)."""
    resumed = ", resumed from checkpoint" if summary.resumed else ""
    loading = f" (loading {loading_s:.1f} s)" if loading_s >= 0.1 else ""
    total = summary.seconds + loading_s
    return f"{summary.name}: {summary.status} in {total:.1f} s{loading}{resumed}"


_SHOWN_PARTITIONS = 4


def left_to_read(stage: StageStats) -> list[str]:
    """What a source has left (lines: the total, then the partitions furthest behind, each
    with its lag and next offset); nothing for a stage that is not a source or cannot tell.

    >>> from dataflare_host.connectors import Backlog, PartitionLag
    >>> src = StageStats("in", "source", "kafka")
    >>> src.backlog = Backlog(7, "offsets", (PartitionLag("0", 2, 98), PartitionLag("1", 5, 120)))
    >>> left_to_read(src)
    ['7 offsets', 'p1 5 at 120', 'p0 2 at 98']
    """
    backlog = stage.backlog if stage.role == "source" else None
    if backlog is None:
        return []
    if backlog.unit == "bytes":
        total = f"{backlog.amount / 2**20:,.1f} MiB"
    else:
        total = f"{backlog.amount:,} offsets"
    behind = sorted(backlog.partitions, key=lambda part: (-part.lag, part.partition))
    lines = [total] + [
        f"p{part.partition} {part.lag:,} at {part.position:,}"
        for part in behind[:_SHOWN_PARTITIONS]
    ]
    if len(behind) > _SHOWN_PARTITIONS:
        lines.append(f"+{len(behind) - _SHOWN_PARTITIONS} partitions")
    return lines


def summary_table(stats: Sequence[StageStats], title: str) -> Table:
    """One row per stage: records in, out, filtered, errored, the rate, and what a source
    has left to read."""
    table = Table(title=title, title_justify="left")
    for column in ("stage", "role", "kind", "in", "out", "filtered", "errored", "rec/s", "left"):
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
            "\n".join(left_to_read(stage)),
        )
    return table


def progress_line(name: str, stats: Sequence[StageStats]) -> str:
    """One plain line of counters for logs and pipes: ``name: stage in->out (errored) ...``.

    >>> from dataflare_host.pipeline._stats import StageStats
    >>> src = StageStats("src", "source", "file", records_out=5)
    >>> progress_line("p", [src]).split(" (")[0]
    'p: src 5'
    """
    parts = []
    for stage in stats:
        counts = (
            f"{stage.records_out:,}"
            if stage.role == "source"
            else f"{stage.records_in:,}->{stage.records_out:,}"
        )
        errored = f", {stage.errored:,} errored" if stage.errored else ""
        left = left_to_read(stage)
        behind = ""
        if left:
            behind = f", {left[0]} left" + (f": {', '.join(left[1:])}" if left[1:] else "")
        parts.append(f"{stage.stage} {counts}{errored} ({stage.rate():,.0f} rec/s{behind})")
    return f"{name}: " + "; ".join(parts)


def terminal_width(console: Console) -> int | None:
    """The width of the terminal ``console`` draws on, measured now (None: not a terminal).

    rich takes the size of the first standard stream that is a terminal, with
    ``$COLUMNS`` over it: a stale ``COLUMNS=80`` (exported by some shells and tools)
    or another stream's terminal would cut a wider table at 80 columns.
    """
    try:
        columns = os.get_terminal_size(console.file.fileno()).columns
    except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
        return None
    return columns or None


class RichProgress:
    """Redraws the stage table in place on a terminal; on a pipe, prints a line every 2 s.

    ``loading_s`` (how long loading the pipeline took: a first build and compile can
    take many seconds) is counted in the summary's time.
    """

    def __init__(
        self,
        name: str,
        console: Console | None = None,
        every_s: float = 2.0,
        loading_s: float = 0.0,
    ) -> None:
        self.name = name
        self.loading_s = loading_s
        self.console = console or Console(stderr=True)
        if not self.console.is_terminal:
            # Piped or logged output: do not squeeze stage names into 80 columns.
            self.console.width = max(self.console.width, 110)
        self._fit_terminal()
        self._every = every_s
        self._last_print = time.monotonic()
        self._live: Live | None = None
        if self.console.is_terminal:
            self._live = Live(console=self.console, refresh_per_second=4, transient=True)
            self._live.start()

    def update(self, stats: Sequence[StageStats]) -> None:
        """Show the current counters."""
        table = summary_table(stats, f"{self.name}: running")
        self._fit_terminal()  # the terminal may have been resized since
        if self._live is not None:
            self._live.update(table)
        elif time.monotonic() - self._last_print >= self._every:
            # A pipe or a log gets lines, not a box redrawn over and over.
            self.console.file.write(progress_line(self.name, stats) + "\n")
            self.console.file.flush()
            self._last_print = time.monotonic()

    def _fit_terminal(self) -> None:
        width = terminal_width(self.console) if self.console.is_terminal else None
        if width is not None:
            self.console.width = width

    def finish(self, summary: RunSummary) -> None:
        """Replace the live table by the final summary."""
        if self._live is not None:
            self._live.stop()
        self.console.print(summary_table(summary.stats, summary_title(summary, self.loading_s)))
        if summary.error:
            # One unwrapped line, like every other error the CLI prints.
            self.console.file.write(f"error: {one_line(summary.error)}\n")
            self.console.file.flush()
