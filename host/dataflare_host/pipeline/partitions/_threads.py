"""One partition worker as a thread of the driver (``workers: 1`` with a sink that splits
by partition): the same tasks, one at a time, in this process."""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence

from dataflare_host.pipeline.partitions._messages import LogLine, Report, Task
from dataflare_host.pipeline.partitions._task_run import TaskPipelineMaker, TaskRun

__all__ = ["ThreadSlots"]


class ThreadSlots:
    """Each slot a thread running one task at a time; reports on one queue."""

    kind = "thread"

    def __init__(self, pipeline_file: str, workers: int, make: TaskPipelineMaker) -> None:
        self._file = pipeline_file
        self._make = make
        self._reports: queue.Queue[tuple[int, Report]] = queue.Queue()
        self._runs: list[tuple[TaskRun, threading.Thread] | None] = [None] * workers

    def launch(self, slot: int) -> None:
        """Nothing to start: a thread begins with its task."""

    def where(self, slot: int) -> str:
        """Where slot ``slot`` runs."""
        return "in the driver"

    def assign(self, slot: int, task: Task) -> None:
        """Run ``task`` in a new thread."""
        run = TaskRun(self._make, self._file, task, lambda r: self._reports.put((slot, r)))
        thread = threading.Thread(target=run.run, name=f"dataflare-partition-{slot + 1}")
        self._runs[slot] = (run, thread)
        thread.start()

    def stop(self, slot: int) -> None:
        """Ask slot ``slot``'s task to stop."""
        running = self._runs[slot]
        if running is not None:
            running[0].stop()

    def wait(
        self, slots: Sequence[int], timeout: float
    ) -> list[tuple[int, list[Report | LogLine] | None]]:
        """Reports that arrived, waiting up to ``timeout`` for the first (a thread never
        dies: a failure is its last report)."""
        answers: dict[int, list[Report | LogLine] | None] = {}
        try:
            slot, report = self._reports.get(timeout=timeout)
        except queue.Empty:
            return []
        while True:
            listed = answers.setdefault(slot, [])
            assert listed is not None
            listed.append(report)
            try:
                slot, report = self._reports.get_nowait()
            except queue.Empty:
                return list(answers.items())

    def ended(self, slot: int) -> str | None:
        """A thread of the driver does not die alone: None."""
        return None

    def kill(self, slot: int) -> None:
        """Stop slot ``slot``'s task and wait for its thread."""
        running, self._runs[slot] = self._runs[slot], None
        if running is not None:
            running[0].stop()
            running[1].join()

    def close(self) -> None:
        """Stop every task and wait for the threads."""
        for slot in range(len(self._runs)):
            self.kill(slot)
