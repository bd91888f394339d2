"""Time charged to a process: the wall clock minus what its threads waited for a CPU.

A time limit guards against a plugin that loops or blocks; it must not fire
because the machine was busy. Linux counts, per thread, the time it was
runnable but waiting on a run queue (the second field of
``/proc/PID/task/TID/schedstat``): the machine withheld that time, the plugin
did not spend it. Wall time minus that wait is what the plugin consumed
(running, or blocked in a call it made), on an idle machine and a loaded one
alike. Both the host (which kills a sandbox process or a build past its
limit) and the sandbox process (which checks a call that returned late)
count this way. Where ``schedstat`` is missing, it is the wall clock.

Standard library only: a sandbox process imports it.
"""

from __future__ import annotations

import os
import time

__all__ = ["Charged", "Stopwatch"]


class Charged:
    """One reading of a :class:`Stopwatch`, in seconds."""

    __slots__ = ("charged_s", "cpu_s", "waited_s", "wall_s")

    def __init__(self, wall_s: float, cpu_s: float, waited_s: float) -> None:
        self.wall_s = wall_s
        self.cpu_s = cpu_s
        """Time on a CPU (all threads counted)."""
        self.waited_s = min(waited_s, wall_s)
        """Time spent runnable, waiting for a CPU (the threads' waits, at most the wall)."""
        self.charged_s = wall_s - self.waited_s
        """What a time limit counts."""

    def machine_note(self) -> str:
        """``(3.1 s of CPU in 30.2 s, 27.0 s of it waiting for a CPU)``."""
        return (
            f"({self.cpu_s:.1f} s of CPU in {self.wall_s:.1f} s, {self.waited_s:.1f} s of it "
            "waiting for a CPU)"
        )


class Stopwatch:
    """Started on a process (``"self"`` for this one, or a pid) and read as :class:`Charged`.

    ``thread_self`` counts only the calling thread, ``main_thread`` only the
    process's first thread (a sandbox process runs the guest on it): one file
    read each, instead of a listing of every thread.
    """

    __slots__ = ("_cpu0", "_paths", "_pid", "_wait0", "_wall0")

    def __init__(
        self, pid: int | str = "self", *, thread_self: bool = False, main_thread: bool = False
    ) -> None:
        self._pid = pid
        self._paths: list[str] | None = None
        if thread_self:
            self._paths = ["/proc/thread-self/schedstat"]
        elif main_thread:
            self._paths = [f"/proc/{pid}/schedstat"]  # the thread group leader's
        self._wall0 = time.monotonic()
        self._cpu0, self._wait0 = _totals(self._schedstat_paths())

    def _schedstat_paths(self) -> list[str]:
        if self._paths is not None:
            return self._paths
        try:
            return [
                f"/proc/{self._pid}/task/{tid}/schedstat"
                for tid in os.listdir(f"/proc/{self._pid}/task")
            ]
        except OSError:  # no /proc, or the process ended
            return []

    def read(self) -> Charged:
        """Wall, CPU and waiting time since the start; charged = wall - waiting."""
        wall = time.monotonic() - self._wall0
        cpu, wait = _totals(self._schedstat_paths())
        # A thread that ended since the start takes its counts with it: never below 0.
        return Charged(wall, max(0, cpu - self._cpu0) / 1e9, max(0, wait - self._wait0) / 1e9)


def _totals(paths: list[str]) -> tuple[int, int]:
    cpu = wait = 0
    for path in paths:
        try:
            with open(path, "rb") as handle:
                fields = handle.read().split()
            cpu += int(fields[0])
            wait += int(fields[1])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended, or no schedstat: counts as no wait
    return cpu, wait
