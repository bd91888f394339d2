"""The main function of a local worker process (started with multiprocessing's spawn)."""

from __future__ import annotations

import signal
from multiprocessing.connection import Connection

from dataflare import PluginError
from dataflare_host._text import one_line

__all__ = ["worker_main"]


def worker_main(conn: Connection, pipeline_file: str) -> None:
    """Load the plugins, say ready (or why not), then answer tasks until the pipe closes."""
    # Ctrl-C on a terminal reaches the whole process group: stopping is the driver's call.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from dataflare_host.pipeline.engines._worker_core import WorkerCore

    try:
        core = WorkerCore(pipeline_file)
    except PluginError as exc:
        conn.send(("error", one_line(str(exc))))
        return
    core.settle_gc()
    conn.send(("ready",))
    try:
        while True:
            try:
                payload = conn.recv_bytes()
            except (EOFError, OSError):
                return  # the driver is gone or closed us
            conn.send_bytes(core.handle(payload))
    finally:
        core.close()
