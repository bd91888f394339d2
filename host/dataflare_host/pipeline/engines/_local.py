"""Worker processes on this machine (multiprocessing, spawn: no inherited threads or locks)."""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dataflare_host.pipeline._errors import PipelineError
from dataflare_host.pipeline._spawned import SpawnedSlots
from dataflare_host.pipeline.engines._process_worker import worker_main

__all__ = ["LocalBackend"]

_LOAD_TIMEOUT_S = 600.0  # a WASM plugin's first use compiles it (cached afterwards)


class LocalBackend(SpawnedSlots):
    """One spawned process per worker slot, each with a pipe to the driver."""

    kind = "local"

    def __init__(self, pipeline_file: Path, workers: int) -> None:
        super().__init__(workers)
        self._file = str(pipeline_file)

    def spawn(self, slot: int) -> str:
        """Start worker ``slot`` and wait until it loaded the plugins."""
        self.launch(slot)
        return self.await_ready(slot)

    def launch(self, slot: int) -> None:
        """Start worker ``slot`` (it loads the plugins while others start)."""
        self._start(slot, worker_main, self._file)

    def await_ready(self, slot: int) -> str:
        """Wait until launched worker ``slot`` loaded the plugins; where it runs."""
        proc, parent = self._procs[slot], self._conns[slot]
        assert proc is not None
        assert parent is not None
        ready = parent.poll(_LOAD_TIMEOUT_S)
        try:
            answer = parent.recv() if ready else ("error", "loading the plugins timed out")
        except (EOFError, OSError):
            answer = ("error", f"it exited with code {proc.exitcode} while loading the plugins")
        if answer[0] != "ready":
            self.kill(slot)
            raise PipelineError(f"worker-{slot + 1} could not start: {answer[1]}")
        return f"pid {proc.pid}"

    def send(self, slot: int, payload: bytes) -> None:
        """Give the worker a task (a dead worker's pipe error shows up in :meth:`wait`)."""
        conn = self._conns[slot]
        assert conn is not None
        # A dead worker: wait() sees its sentinel and the task is retried.
        with contextlib.suppress(OSError):
            conn.send_bytes(payload)

    def wait(self, slots: Sequence[int], timeout: float) -> list[tuple[int, bytes | None]]:
        """Answers (or deaths) of the busy workers."""
        by_handle: dict[Any, int] = {}
        for slot in slots:
            conn, proc = self._conns[slot], self._procs[slot]
            assert conn is not None
            assert proc is not None
            by_handle[conn] = slot
            by_handle[proc.sentinel] = slot
        woke = multiprocessing.connection.wait(list(by_handle), timeout)
        answers: dict[int, bytes | None] = {}
        for handle in woke:
            slot = by_handle[handle]
            if slot in answers:
                continue
            conn = self._conns[slot]
            assert conn is not None
            try:
                # An answer sent just before dying still counts.
                answers[slot] = conn.recv_bytes() if conn.poll() else None
            except (EOFError, OSError):
                answers[slot] = None
        return list(answers.items())

    def close(self) -> None:
        """Kill every worker: all the signals first, then the waits, so a stop waits for
        the slowest worker to go rather than for each in turn."""
        for proc in self._procs:
            if proc is not None and proc.is_alive():
                proc.kill()
        for slot in range(len(self._procs)):
            self.kill(slot)
