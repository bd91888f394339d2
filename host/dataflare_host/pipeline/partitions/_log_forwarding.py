"""A worker's log lines, sent to the driver to be logged there (see :class:`LogLine`).

A spawned worker process or a Ray actor has none of the driver's logging set-up: left
alone, its warnings would reach stderr through Python's last-resort handler, bare and
never as JSON, or Ray's log files. Forwarded, each is one line the driver writes like
its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from dataflare_host.pipeline.partitions._messages import LogLine

__all__ = ["forward_logs"]


class _Forwarding(logging.Handler):
    def __init__(self, send: Callable[[LogLine], None]) -> None:
        super().__init__()
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._send(LogLine(record.levelno, record.name, record.getMessage()))
        except Exception:  # noqa: BLE001 - a log line never fails the task
            self.handleError(record)


def forward_logs(send: Callable[[LogLine], None], level: int) -> None:
    """From now on, this process's log lines at ``level`` and above go to ``send``."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_Forwarding(send))
    root.setLevel(level)
