"""Worker processes on this machine, one per slot, each with a pipe to the driver: what the
chain's local workers and the partition workers share (multiprocessing's spawn: no
inherited threads or locks)."""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

__all__ = ["SpawnedSlots"]


class SpawnedSlots:
    """One spawned process per slot; ``target(child_end_of_pipe, *args)`` is its main."""

    def __init__(self, workers: int) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._procs: list[BaseProcess | None] = [None] * workers
        self._conns: list[Connection | None] = [None] * workers

    def pid(self, slot: int) -> int | None:
        """The process id of a worker (tests kill it)."""
        proc = self._procs[slot]
        return proc.pid if proc is not None else None

    def ended(self, slot: int) -> str | None:
        """How slot ``slot``'s process ended (``killed by SIGKILL``, ``exited with status
        3``), or None while it runs."""
        proc = self._procs[slot]
        code = proc.exitcode if proc is not None else None
        if code is None:
            return None
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exited with status {code}"

    def _start(self, slot: int, target: Callable[..., None], *args: Any) -> None:
        """Start slot ``slot``'s process (killing the one before it, if any)."""
        self.kill(slot)
        parent, child = self._context.Pipe(duplex=True)
        proc = self._context.Process(
            target=target, args=(child, *args), name=f"dataflare-worker-{slot + 1}", daemon=True
        )
        proc.start()
        child.close()
        self._procs[slot], self._conns[slot] = proc, parent

    def kill(self, slot: int) -> None:
        """Kill a worker at once (SIGKILL) and forget it."""
        proc, conn = self._procs[slot], self._conns[slot]
        self._procs[slot] = self._conns[slot] = None
        if conn is not None:
            conn.close()
        if proc is not None:
            if proc.is_alive():
                proc.kill()
            proc.join(timeout=5)
