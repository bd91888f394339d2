"""Partition workers as processes on this machine (multiprocessing, spawn)."""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
from collections.abc import Sequence
from typing import Any

from dataflare_host.pipeline._spawned import SpawnedSlots
from dataflare_host.pipeline.partitions._messages import LogLine, Report, Task
from dataflare_host.pipeline.partitions._process_main import STOP, partition_worker_main
from dataflare_host.pipeline.partitions._task_run import TaskPipelineMaker

__all__ = ["ProcessSlots"]


class ProcessSlots(SpawnedSlots):
    """One spawned process per worker slot, each with a pipe to the driver."""

    kind = "local"

    def __init__(
        self, pipeline_file: str, workers: int, make: TaskPipelineMaker, log_level: int
    ) -> None:
        super().__init__(workers)
        self._file = pipeline_file
        self._make = make
        self._log_level = log_level

    def launch(self, slot: int) -> None:
        """Start worker ``slot`` (it imports the host while the others start)."""
        self._start(slot, partition_worker_main, self._file, self._make, self._log_level)

    def where(self, slot: int) -> str:
        """Where worker ``slot`` runs."""
        return f"pid {self.pid(slot)}"

    def assign(self, slot: int, task: Task) -> None:
        """Give worker ``slot`` a task (a dead worker shows up in :meth:`wait`)."""
        self._send(slot, task)

    def stop(self, slot: int) -> None:
        """Ask worker ``slot``'s task to stop; its last report follows."""
        self._send(slot, STOP)

    def _send(self, slot: int, message: Any) -> None:
        conn = self._conns[slot]
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.send(message)

    def wait(
        self, slots: Sequence[int], timeout: float
    ) -> list[tuple[int, list[Report | LogLine] | None]]:
        """Reports and log lines of the busy workers (all that arrived), None for one that
        died."""
        by_handle: dict[Any, int] = {}
        for slot in slots:
            conn, proc = self._conns[slot], self._procs[slot]
            if conn is None or proc is None:
                continue
            by_handle[conn] = slot
            by_handle[proc.sentinel] = slot
        answers: dict[int, list[Report | LogLine] | None] = {}
        for handle in multiprocessing.connection.wait(list(by_handle), timeout):
            slot = by_handle[handle]
            if slot in answers:
                continue
            conn = self._conns[slot]
            assert conn is not None
            reports: list[Report | LogLine] = []
            try:
                # Reports sent just before dying still count.
                while conn.poll():
                    reports.append(conn.recv())
            except (EOFError, OSError):
                pass
            proc = self._procs[slot]
            if reports:
                answers[slot] = reports  # a death after them is seen on the next wait
            elif proc is None or not proc.is_alive():
                answers[slot] = None
        return list(answers.items())

    def close(self) -> None:
        """Close every pipe (workers end their task and exit), then kill what lingers."""
        for conn in self._conns:
            if conn is not None:
                conn.close()
        for proc in self._procs:
            if proc is not None:
                proc.join(timeout=5)
        for slot in range(len(self._procs)):
            self.kill(slot)
