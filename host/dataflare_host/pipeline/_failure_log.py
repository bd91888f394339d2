"""Logging records a run skipped or dead-lettered: one summary per interval, not a line each.

A pipeline that dead-letters a million records must not write a million log
lines: the records themselves go to the dead-letter sink, and the log says how
many, per stage and action, with the first one's error as an example. The
first failure of a stage is logged at once (an operator sees the problem start);
later ones are counted and summed up once per interval, and at the end of the run.
"""

from __future__ import annotations

import logging
import time

import attrs

__all__ = ["FailureLog"]

log = logging.getLogger("dataflare.pipeline")

SUMMARY_INTERVAL_S = 10.0


@attrs.define
class _Tally:
    count: int = 0
    example: str = ""


class FailureLog:
    """Counts failed records per (stage, action) and logs them as WARNING summaries.

    ``what`` names the stage as the log line should (``processor 'parse'``,
    ``sink 'out'``); ``action`` is the past tense the line uses (``dead-lettered``,
    ``skipped``, ``refused``). Used from the pipeline's main loop only.
    """

    def __init__(self, interval_s: float = SUMMARY_INTERVAL_S) -> None:
        self._interval = interval_s
        self._tallies: dict[tuple[str, str], _Tally] = {}
        self._seen: set[tuple[str, str]] = set()
        self._last = time.monotonic()

    def note(self, what: str, action: str, error: str) -> None:
        """Count one failed record; the first of a (stage, action) is logged at once."""
        key = (what, action)
        if key not in self._seen:
            self._seen.add(key)
            log.warning("%s %s a record: %s", what, action, error)
            return
        tally = self._tallies.setdefault(key, _Tally())
        tally.count += 1
        tally.example = tally.example or error

    def tick(self, now: float | None = None) -> None:
        """Log the summaries when an interval has passed since the last ones."""
        now = time.monotonic() if now is None else now
        if now - self._last >= self._interval:
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        """Log one summary per (stage, action) counted since the last flush."""
        now = time.monotonic() if now is None else now
        elapsed = now - self._last
        for (what, action), tally in self._tallies.items():
            log.warning(
                "%s %s %s more record(s) in the last %.0f s; the first: %s",
                what,
                action,
                f"{tally.count:,}",
                elapsed,
                tally.example,
            )
        self._tallies.clear()
        self._last = now
