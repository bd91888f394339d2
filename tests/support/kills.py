"""Small helpers several test modules share (strategies live in strategies.py)."""

from __future__ import annotations

import math
import os
import random
import re
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml


def line_of(text: str, needle: str) -> int:
    """1-based line number of the one line of ``text`` holding ``needle``."""
    numbers = [n for n, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(numbers) == 1, (needle, numbers)
    return numbers[0]


def summary_rows(text: str) -> dict[str, list[str]]:
    """The rows of a printed summary table, by stage name."""
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if len(cells) == 8:
            rows[cells[0]] = cells
    return rows


_PROGRESS = re.compile(r"^(building|loading) .*(\.\.\.|\.\.\. \d+ s|: \d+\.\d s)$")


def without_progress(stderr: str) -> str:
    """``stderr`` without the progress lines of long waits (a cold cache builds and compiles).

    Those lines announce waits, never failures (tests/wasm/test_progress_lines.py checks
    them); a test about a command's error lines compares what remains.
    """
    return "".join(
        line for line in stderr.splitlines(keepends=True) if not _PROGRESS.match(line.rstrip("\n"))
    )


def write_one_processor_pipeline(path: Path, processor: dict[str, Any]) -> Path:
    """A pipeline file at ``path``: one generated record -> ``processor`` (its ``config:``)
    -> stdout. For tests about loading one plugin, not about moving records."""
    doc = {
        "sources": [
            {
                "id": "in",
                "type": "plugin",
                "config": {"plugin_type": "generator", "connection": {"count": 1}},
            }
        ],
        "processors": [{"id": "p", "type": "plugin", "config": processor}],
        "sinks": [{"id": "out", "type": "plugin", "config": {"plugin_type": "stdout"}}],
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def size_of(path: Path) -> int:
    """The file's size, 0 while it does not exist yet."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def kill_mid_run(
    command: Sequence[str],
    directory: Path,
    sink: Path,
    *,
    kills: int,
    rng: random.Random,
    pause_s: float,
    more_input: Callable[[], None],
    budget_s: float,
    aim: Callable[[int, subprocess.Popen[bytes]], None] | None = None,
    final_timeout_s: float = 120,
) -> None:
    """Run ``command`` in ``directory`` and SIGKILL it ``kills`` times, then run it to the end.

    Each kill lands mid-run: after the run first grows ``sink``, a random pause of up
    to ``pause_s``, then ``aim(kill_number, child)`` if given (to wait for a riskier
    moment). A run that finishes before its kill must succeed; ``more_input()`` then
    gives the next run something to do. The last run must succeed too.
    """
    done, deadline = 0, time.monotonic() + budget_s
    while done < kills:
        assert time.monotonic() < deadline, f"only {done} kills in {budget_s:g} s"
        before = size_of(sink)
        child = subprocess.Popen(
            command, cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            # Wait until this run writes, so that the kill lands mid-run, not in start-up.
            while child.poll() is None and size_of(sink) <= before:
                time.sleep(0.002)
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


def comparable_json_value(value: Any) -> Any:
    """A decoded JSON value made comparable with ``==``: NaN by its repr (NaN != NaN),
    and each value tagged with its type so 1, 1.0 and True stay apart."""
    if isinstance(value, float):
        return ("float", repr(value) if math.isnan(value) else value)
    if isinstance(value, list):
        return ("list", [comparable_json_value(v) for v in value])
    if isinstance(value, dict):
        return ("dict", [(k, comparable_json_value(v)) for k, v in value.items()])
    return (type(value).__name__, value)
