"""Reading what a command printed: one line's number, a summary table, stderr without progress."""

from __future__ import annotations

import re


def line_of(text: str, needle: str) -> int:
    """1-based line number of the one line of ``text`` holding ``needle``."""
    numbers = [n for n, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(numbers) == 1, (needle, numbers)
    return numbers[0]


def summary_rows(text: str) -> dict[str, list[str]]:
    """The rows of a printed summary table, by stage name (a source's further lines of what
    it has left, one per partition, have no stage name: they are not rows)."""
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if len(cells) == 9 and cells[0]:
            rows[cells[0]] = cells
    return rows


# A wait line may end with the estimate from the previous build of the same phase.
_PROGRESS = re.compile(
    r"^(building|loading) .*(\.\.\.|\.\.\. \d+ s|: \d+\.\d s)( \(about \d+ s last time\))?$"
)


def without_progress(stderr: str) -> str:
    """``stderr`` without the progress lines of long waits (a cold cache builds and compiles).

    Those lines announce waits, never failures (tests/wasm/test_progress_lines.py checks
    them); a test about a command's error lines compares what remains.
    """
    return "".join(
        line for line in stderr.splitlines(keepends=True) if not _PROGRESS.match(line.rstrip("\n"))
    )
