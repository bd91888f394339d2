"""The command line's logging: log lines on stderr, as text or JSON, at the chosen level;
progress lines (a first build, a first compile) and a run's own lines (start, progress,
summary, error: :mod:`._run_output`) at any level."""

from __future__ import annotations

import logging
import sys

__all__ = ["configure_logging", "json_lines"]

_JSON = {"on": False}  # set by configure_logging: --log-format json


def configure_logging(verbose: int, log_format: str) -> None:
    """Log at WARNING, INFO (``verbose`` 1) or DEBUG (2 and more) to stderr, as plain
    text or, with ``log_format`` ``json``, one JSON object per line."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    formatter: logging.Formatter
    if log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        formatter = JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    else:
        formatter = logging.Formatter("%(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(level)
    if not any(isinstance(h, _StderrLines) for h in root.handlers):
        root.addHandler(_StderrLines())
    for handler in root.handlers:
        if isinstance(handler, _StderrLines):
            handler.setFormatter(formatter)
    _JSON["on"] = log_format == "json"
    _show_lines("dataflare.progress", formatter if log_format == "json" else None)
    _show_lines("dataflare.run", formatter if log_format == "json" else None)


def json_lines() -> bool:
    """Whether ``--log-format json`` is on: everything said on stderr is then JSON."""
    return _JSON["on"]


class _StderrLines(logging.Handler):
    """Plain lines on whatever ``sys.stderr`` is when a record is emitted."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):  # a closed or broken stderr: nothing to tell
            pass


def _show_lines(name: str, formatter: logging.Formatter | None) -> None:
    # Long waits (a first build, a first compile) announce themselves on
    # dataflare.progress, and a run's own lines go to dataflare.run (as JSON only):
    # they are shown at any verbosity, as plain lines even when piped.
    progress = logging.getLogger(name)
    progress.setLevel(logging.INFO)
    progress.propagate = False
    handlers = [h for h in progress.handlers if isinstance(h, _StderrLines)]
    if not handlers:
        handlers = [_StderrLines()]
        progress.addHandler(handlers[0])
    for handler in handlers:
        handler.setFormatter(formatter or logging.Formatter("%(message)s"))
