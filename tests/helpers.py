"""Small helpers several test modules share (strategies live in strategies.py)."""

from __future__ import annotations

import re
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
