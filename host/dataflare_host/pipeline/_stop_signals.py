"""SIGINT and SIGTERM as a request to stop a run (finish the batch in flight, flush,
checkpoint), while the run lasts."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType

__all__ = ["stop_on_signals"]

log = logging.getLogger("dataflare.pipeline")


def stop_on_signals(stop: Callable[[str], None]) -> Callable[[], None] | None:
    """Call ``stop`` with the signal's name on SIGINT or SIGTERM; returns what puts the
    previous handlers back (None off the main thread, where Python takes no handler)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        log.warning(
            "received %s: stopping (finishing the batch in flight, flushing, checkpointing)", name
        )
        stop(name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
