"""What a run reports while it runs and when it ends: for progress displays and metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

import attrs

from dataflare_host.pipeline._stats import StageStats

__all__ = ["ProgressReporter", "RunHealth", "RunSummary"]


class ProgressReporter(Protocol):
    """Receives the stage counters while a pipeline runs."""

    def update(self, stats: Sequence[StageStats]) -> None:
        """Called a few times per second from the pipeline's main loop."""

    def finish(self, summary: RunSummary) -> None:
        """Called once, when the run ends."""


@attrs.frozen
class RunHealth:
    """What a running pipeline's counters do not hold: for the metrics server."""

    started_at: float
    """When the run started (``time.time()``)."""
    checkpointed_at: float | None
    """When the last checkpoint was committed (``time.time()``), None before the first."""
    retries: dict[str, int]
    """Per sink id (the dead-letter sink's too): writes it retried so far."""


@attrs.frozen
class RunSummary:
    """How a run ended, with every stage's counters."""

    name: str
    status: Literal["completed", "stopped", "failed"]
    stats: list[StageStats]
    seconds: float
    error: str | None = None
    resumed: bool = False
    signal: str | None = None
    """The signal that stopped the run (``SIGINT``, ``SIGTERM``), if one did."""
    engine: str = "engine in-process, 1 worker (the driver)"
    """The engine and its workers (``workers:``, ``engine:``); empty when the run failed
    before an engine started (a damaged checkpoint, a refused connection)."""

    @property
    def exit_code(self) -> int:
        """1 when the run failed; 130 when SIGINT stopped it (the shell's convention for
        Ctrl-C); 0 when it completed or SIGTERM/:meth:`Pipeline.stop` stopped it cleanly."""
        if self.status == "failed":
            return 1
        return 130 if self.signal == "SIGINT" else 0
