"""What ``dataflare`` says besides records: start lines, progress, the summary, the error.

As text by default (a live table on a terminal, lines on a pipe, ``error: ...`` last); with
``--log-format json`` every such line is one JSON object instead, on the ``dataflare.run``
logger (``event``: ``start``, ``progress``, ``summary``, ``error``), so a collector reading
stdout and stderr never meets a plain-text line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import click

from dataflare_host._text import one_line
from dataflare_host.cli._logging import json_lines
from dataflare_host.pipeline import RunSummary, StageStats

__all__ = ["JsonProgress", "say", "say_error", "stage_fields"]

log = logging.getLogger("dataflare.run")


def say(message: str, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """One line for the operator on stderr: text, or a JSON object with ``event``."""
    if json_lines():
        log.log(level, message, extra={"event": event, **fields})
    else:
        click.echo(message, err=True)


def say_error(message: str) -> None:
    """The one error line a failed command ends with (``error: ...`` as text)."""
    if json_lines():
        log.error(one_line(message), extra={"event": "error"})
    else:
        click.echo(f"error: {one_line(message)}", err=True)


def stage_fields(stats: Sequence[StageStats]) -> list[dict[str, Any]]:
    """Each stage's counters as a JSON-ready mapping (the summary table's columns; ``left``
    only for a source that can tell what it has left)."""
    return [
        {
            "stage": stage.stage,
            "role": stage.role,
            "kind": stage.kind,
            "in": stage.records_in,
            "out": stage.records_out,
            "filtered": stage.filtered,
            "errored": stage.errored,
            "rate": round(stage.rate(), 1),
            **_left(stage),
        }
        for stage in stats
    ]


def _left(stage: StageStats) -> dict[str, Any]:
    backlog = stage.backlog if stage.role == "source" else None
    if backlog is None:
        return {}
    left: dict[str, Any] = {"amount": backlog.amount, "unit": backlog.unit}
    if backlog.partitions:
        left["partitions"] = [
            {"partition": part.partition, "lag": part.lag, "position": part.position}
            for part in backlog.partitions
        ]
    return {"left": left}


class JsonProgress:
    """Progress as JSON objects: the counters every ``every_s`` seconds, then the summary
    (and the error, when the run failed). ``loading_s`` counts in the summary's seconds."""

    def __init__(self, name: str, every_s: float = 2.0, loading_s: float = 0.0) -> None:
        self.name = name
        self.loading_s = loading_s
        self._every = every_s
        self._last = time.monotonic()

    def update(self, stats: Sequence[StageStats]) -> None:
        """Log the counters when ``every_s`` passed since the last time."""
        if time.monotonic() - self._last >= self._every:
            self._last = time.monotonic()
            say(f"{self.name}: running", "progress", stages=stage_fields(stats))

    def finish(self, summary: RunSummary) -> None:
        """Log the summary, then the error if the run failed."""
        seconds = summary.seconds + self.loading_s
        say(
            f"{summary.name}: {summary.status} in {seconds:.1f} s",
            "summary",
            status=summary.status,
            seconds=round(seconds, 3),
            loading_seconds=round(self.loading_s, 3),
            resumed=summary.resumed,
            engine=str(summary.engine),
            stages=stage_fields(summary.stats),
        )
        if summary.error:
            say_error(summary.error)
