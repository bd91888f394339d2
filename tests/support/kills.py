"""Killing a command mid-run with SIGKILL, again and again, then running it to the end."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


def size_of(path: Path) -> int:
    """The file's size, 0 while it does not exist yet."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _size_of_file(path: Path) -> Callable[[], int]:
    return lambda: size_of(path)


def kill_mid_run(
    command: Sequence[str],
    directory: Path,
    sink: Path | Callable[[], int],
    *,
    kills: int,
    rng: random.Random,
    pause_s: float,
    more_input: Callable[[], None],
    budget_s: float,
    aim: Callable[[int, subprocess.Popen[bytes]], None] | None = None,
    final_timeout_s: float = 120,
    poll_s: float = 0.002,
) -> None:
    """Run ``command`` in ``directory`` and SIGKILL it ``kills`` times, then run it to the end.

    Each kill lands mid-run: after the run first grows ``sink`` (a file, or a function
    that counts what was written so far, polled every ``poll_s``), a random pause of up
    to ``pause_s``, then ``aim(kill_number, child)`` if given (to wait for a riskier
    moment). A run that finishes before its kill must succeed; ``more_input()`` then
    gives the next run something to do. The last run must succeed too.
    """
    written = sink if callable(sink) else _size_of_file(sink)
    done, deadline = 0, time.monotonic() + budget_s
    while done < kills:
        assert time.monotonic() < deadline, f"only {done} kills in {budget_s:g} s"
        before = written()
        child = subprocess.Popen(
            command, cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            # Wait until this run writes, so that the kill lands mid-run, not in start-up.
            while child.poll() is None and written() <= before:
                time.sleep(poll_s)
            time.sleep(rng.uniform(0.0, pause_s))
            if aim is not None:
                aim(done, child)
            if child.poll() is not None:
                _, stderr = child.communicate()
                assert child.returncode == 0, stderr.decode()
                more_input()
                continue
            os.kill(child.pid, signal.SIGKILL)
            child.communicate()
            done += 1
        finally:
            if child.poll() is None:
                child.kill()
                child.communicate()
    final = subprocess.run(
        command,
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=final_timeout_s,
        check=False,
    )
    assert final.returncode == 0, final.stderr
