"""The in-memory pipeline harness: ``run_pipeline`` runs a pipeline file on given records."""

from __future__ import annotations

import time
from pathlib import Path

import yaml
from support.paths import EXAMPLES

from dataflare import Record
from dataflare_host.testing import run_pipeline

MINUTE = 60_000


def windowed_pipeline(tmp_path: Path) -> Path:
    path = tmp_path / "windows.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "per-minute",
                "sources": [
                    {
                        "id": "events",
                        "type": "plugin",
                        "config": {
                            "plugin_type": "file",
                            "connection": {"path": "never-read.jsonl"},
                        },
                    }
                ],
                "processors": [
                    {
                        "id": "count",
                        "type": "plugin",
                        "config": {
                            "plugin_type": "aggregate",
                            "plugin_path": str(EXAMPLES / "windowed_count_aggregate.py"),
                            "window": {"type": "tumbling", "size_ms": MINUTE, "lateness_ms": 0},
                            "on_error": "dead_letter",
                        },
                    }
                ],
                "sinks": [
                    {
                        "id": "counts",
                        "type": "plugin",
                        "config": {
                            "plugin_type": "file",
                            "connection": {"path": "never-written.jsonl"},
                        },
                    }
                ],
                "dead_letter": {
                    "id": "late",
                    "type": "plugin",
                    "config": {
                        "plugin_type": "file",
                        "connection": {"path": "never-written-either.jsonl"},
                    },
                },
            }
        ),
        encoding="utf-8",
    )
    return path


def test_a_windowed_aggregate_with_controlled_time_runs_in_memory_in_under_a_second(
    tmp_path: Path,
) -> None:
    """Event time is what the test says: windows close as the watermark passes them, a late
    record is dead-lettered, and nothing touches the files the YAML names."""
    events = [
        Record(b"a", timestamp=5_000),
        Record(b"b", timestamp=30_000),
        Record(b"c", timestamp=61_000),  # closes [0, 60000): count 2
        Record(b"late", timestamp=10_000),  # its window closed: dead-lettered
        Record(b"d", timestamp=125_000),  # closes [60000, 120000): count 1
    ]
    started = time.monotonic()
    result = run_pipeline(windowed_pipeline(tmp_path), {"events": events}, batch_size=1)
    assert time.monotonic() - started < 1.0
    assert result.summary.status == "completed"
    assert result.values("counts") == [b"2", b"1"]
    assert [r.metadata["window_start"] for r in result.outputs["counts"]] == ["0", "60000"]
    assert [d["record"]["value"] for d in result.dead_letters] == ["late"]
    assert result.dead_letters[0]["error"]["error_type"] == "LateRecordError"
    assert not (tmp_path / "never-written.jsonl").exists()


def test_a_second_run_on_the_same_checkpoint_resumes(tmp_path: Path) -> None:
    """With a checkpoint file, a second run continues after the records already delivered."""
    path = windowed_pipeline(tmp_path)
    checkpoint = tmp_path / "state.json"
    first = [Record(b"a", timestamp=1_000), Record(b"b", timestamp=2_000)]
    run_pipeline(path, {"events": first}, checkpoint=checkpoint)
    more = [*first, Record(b"c", timestamp=3_000), Record(b"d", timestamp=70_000)]
    result = run_pipeline(path, {"events": more}, checkpoint=checkpoint)
    # Only c and d were read again; the window [0, 60000) kept a and b in its state.
    assert result.summary.resumed
    assert result.values("counts") == [b"3"]
