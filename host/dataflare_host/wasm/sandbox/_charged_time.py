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
        """Time on a CPU (of the threads read)."""
        self.waited_s = min(waited_s, wall_s)
        """Time spent runnable, waiting for a CPU (at most the wall)."""
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
    read each. Otherwise every thread is read and the wait counted is the mean
    over the threads that ran or waited since the start: summed, the waits of
    threads contending with each other could cover the whole wall clock.
    """

    __slots__ = ("_pid", "_single", "_start", "_wall0")

    def __init__(
        self, pid: int | str = "self", *, thread_self: bool = False, main_thread: bool = False
    ) -> None:
        self._pid = pid
        self._single: str | None = None
        if thread_self:
            self._single = "/proc/thread-self/schedstat"
        elif main_thread:
            self._single = f"/proc/{pid}/schedstat"  # the thread group leader's
        self._wall0 = time.monotonic()
        self._start = self._counts()

    def _paths(self) -> list[str]:
        if self._single is not None:
            return [self._single]
        try:
            tids = os.listdir(f"/proc/{self._pid}/task")
        except OSError:  # no /proc, or the process ended
            return []
        return [f"/proc/{self._pid}/task/{tid}/schedstat" for tid in tids]

    def _counts(self) -> dict[str, tuple[int, int]]:
        counts = {}
        for path in self._paths():
            try:
                with open(path, "rb") as handle:
                    fields = handle.read().split()
                counts[path] = (int(fields[0]), int(fields[1]))
            except (OSError, ValueError, IndexError):
                continue  # a thread that ended, or no schedstat: counts as no wait
        return counts

    def read(self) -> Charged:
        """Wall, CPU and waiting time since the start; charged = wall - waiting."""
        wall = time.monotonic() - self._wall0
        cpu = waited = 0
        active = 0
        for path, (run, wait) in self._counts().items():
            run0, wait0 = self._start.get(path, (0, 0))
            # A thread that ended since the start takes its counts with it: never below 0.
            ran, waits = max(0, run - run0), max(0, wait - wait0)
            cpu += ran
            waited += waits
            active += bool(ran or waits)
        return Charged(wall, cpu / 1e9, waited / max(1, active) / 1e9)
