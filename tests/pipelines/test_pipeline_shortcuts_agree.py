"""A whole pipeline gives the same result on its fast paths as on the slow ones.

File sources are read in the main loop (no reader thread) and in bulk; the
same pipeline with reader threads and line-by-line reading must write the same
bytes, save the same checkpoint, count the same records and fail with the same
one-line error on a bad line. The runner's garbage-collection setting is put
back after a run, and handled batches do not pile up waiting for a collection.
"""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.paths import EXAMPLES

from dataflare import Record
from dataflare_host.connectors import FileSource
from dataflare_host.pipeline._runner import Pipeline

STATUSES = ("active", "paused", "deleted")


def _write_inputs(folder: Path, bad_line: int | None = None) -> None:
    """Three JSONL files in ``folder``: blank lines, CRLF ends, one without a last newline."""
    folder.mkdir()
    number = 0
    for part in range(3):
        lines = []
        for _ in range(40 + part * 13):
            doc = {"id": number, "status": STATUSES[number % 3], "name": f"user-{number}"}
            lines.append(json.dumps(doc))
            if number % 17 == 0:
                lines.append("   ")
            number += 1
        if bad_line is not None and part == 1:
            lines[bad_line] = '{"id": "unfinished'
        end = "\r\n" if part == 1 else "\n"
        text = end.join(lines) + ("" if part == 2 else end)
        (folder / f"part-{part}.jsonl").write_text(text, encoding="utf-8")


def _pipeline(directory: Path, inputs: Path, batch: int) -> Path:
    document = {
        "name": "speed",
        "batch": {"size": batch, "linger_ms": 10, "queue_batches": 2},
        "checkpoint": {"path": "speed.checkpoint.json", "interval_ms": 1},
        "sources": [
            {
                "id": "in",
                "type": "plugin",
                "config": {
                    "plugin_type": "file",
                    "connection": {"path": str(inputs), "format": "jsonl"},
                },
            }
        ],
        "processors": [
            {
                "id": "active",
                "type": "plugin",
                "config": {
                    "plugin_type": "filter",
                    "plugin_path": str(EXAMPLES / "json_field_filter.py"),
                    "params": {"field": "status", "value": "active"},
                },
            },
            {
                "id": "upper",
                "type": "plugin",
                "config": {"plugin_type": "map", "plugin_path": str(EXAMPLES / "uppercase_map.py")},
            },
        ],
        "sinks": [
            {
                "id": "out",
                "type": "plugin",
                "config": {
                    "plugin_type": "file",
                    "connection": {"path": str(directory / "out.jsonl"), "fsync": False},
                },
            }
        ],
    }
    file = directory / "pipeline.yaml"
    file.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return file


@pytest.fixture
def slow_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reader threads and line-by-line reading, as before the fast paths."""
    monkeypatch.setattr(FileSource, "reads_inline", lambda self: False)
    monkeypatch.setattr(FileSource, "_add_slice", lambda self, columns, taken, first: False)


def _run(directory: Path, bad_line: int | None, batch: int) -> dict[str, Any]:
    directory.mkdir()
    inputs = directory / "in"
    _write_inputs(inputs, bad_line)
    pipeline = Pipeline.from_file(_pipeline(directory, inputs, batch))
    try:
        summary = pipeline.run(None, handle_signals=False)
    finally:
        pipeline.close()
    checkpoint = directory / "speed.checkpoint.json"
    return {
        "status": summary.status,
        "error": summary.error and summary.error.replace(str(directory), "<dir>"),
        "stats": [
            (s.stage, s.records_in, s.records_out, s.filtered, s.errored) for s in summary.stats
        ],
        "output": (directory / "out.jsonl").read_bytes(),
        "checkpoint": json.loads(checkpoint.read_text()) if checkpoint.exists() else None,
    }


def _normalised(result: dict[str, Any], directory: Path) -> dict[str, Any]:
    text = json.dumps(result["checkpoint"]).replace(str(directory), "<dir>")
    checkpoint = json.loads(text)
    if checkpoint is not None:
        checkpoint.pop("saved_at")
    return {**result, "checkpoint": checkpoint}


@pytest.mark.parametrize("batch", [1, 7, 500])
@pytest.mark.parametrize("bad_line", [None, 20])
def test_fast_and_slow_paths_write_and_checkpoint_the_same(
    tmp_path: Path, request: pytest.FixtureRequest, batch: int, bad_line: int | None
) -> None:
    fast = _normalised(_run(tmp_path / "fast", bad_line, batch), tmp_path / "fast")
    request.getfixturevalue("slow_paths")
    slow = _normalised(_run(tmp_path / "slow", bad_line, batch), tmp_path / "slow")
    if bad_line is not None:
        # How far a reader thread read ahead of the failure depends on timing:
        # the source's own count is not compared, every later stage's is.
        for result in (fast, slow):
            result["stats"] = result["stats"][1:]
    assert fast == slow
    if bad_line is None:
        assert fast["status"] == "completed"
        assert fast["output"].count(b"\n") == sum(1 for i in range(159) if i % 3 == 0)
    else:
        assert fast["status"] == "failed"
        assert fast["error"].startswith(
            "source 'in' failed: <dir>/in/part-1.jsonl:21: not valid JSON (Unterminated string"
        )


def test_a_run_puts_the_collector_threshold_back_and_frees_its_batches(tmp_path: Path) -> None:
    previous = gc.get_threshold()
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()  # what a run leaves for the collector stays in sight
    try:
        result = _run(tmp_path / "run", None, 7)
        left = sum(1 for o in gc.get_objects() if type(o) is Record)
    finally:
        if was_enabled:
            gc.enable()
    assert result["status"] == "completed"
    assert gc.get_threshold() == previous
    assert left < 50, f"{left} records of handled batches still wait for the collector"
