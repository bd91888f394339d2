"""Operators' views of a run: Prometheus metrics and JSON logs."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml
from support.pipeline_files import file_pipeline

from dataflare_host.pipeline import Pipeline
from dataflare_host.pipeline._metrics import MetricsServer

PIPELINE = {
    "name": "metered",
    "sources": [
        {
            "id": "in",
            "type": "plugin",
            "config": {"plugin_type": "generator", "connection": {"count": 250}},
        }
    ],
    "processors": [
        {
            "id": "keep",
            "type": "plugin",
            "config": {"plugin_type": "filter", "plugin_path": "keep_even.py"},
        }
    ],
    "sinks": [
        {
            "id": "out",
            "type": "plugin",
            "config": {"plugin_type": "file", "connection": {"path": "out.jsonl"}},
        }
    ],
}

KEEP_EVEN = (
    "import dataflare\n\n@dataflare.filter\ndef keep_even(record):\n"
    "    return record.json()['id'] % 2 == 0\n"
)


def write(tmp_path: Path) -> Path:
    (tmp_path / "keep_even.py").write_text(KEEP_EVEN, encoding="utf-8")
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(PIPELINE), encoding="utf-8")
    return path


def scrape(port: int) -> dict[str, float]:
    """The samples of /metrics, by their full name with labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_metrics_match_the_summary(tmp_path: Path) -> None:
    """A scrape at the end of a run shows exactly the summary's per-stage counters."""
    server = MetricsServer(0, pipeline="metered")
    pipeline = Pipeline.from_file(write(tmp_path))
    try:
        summary = pipeline.run(server, handle_signals=False)
        samples = scrape(server.port)
    finally:
        pipeline.close()
        server.close()
    assert summary.status == "completed"
    for stage in summary.stats:
        labels = f'pipeline="metered",role="{stage.role}",stage="{stage.stage}"'
        assert samples[f"dataflare_records_in_total{{{labels}}}"] == stage.records_in
        assert samples[f"dataflare_records_out_total{{{labels}}}"] == stage.records_out
        assert samples[f"dataflare_filtered_total{{{labels}}}"] == stage.filtered
    keep = 'pipeline="metered",role="processor",stage="keep"'
    assert samples[f"dataflare_records_in_total{{{keep}}}"] == 250
    assert samples[f"dataflare_filtered_total{{{keep}}}"] == 125
    assert samples['dataflare_running{pipeline="metered"}'] == 0


def test_log_format_json_lines_parse(tmp_path: Path) -> None:
    """--log-format json: every stderr line of a run with warnings is one JSON object."""
    path = write(tmp_path)
    (tmp_path / "keep_even.py").write_text(
        KEEP_EVEN.replace(
            "return record",
            "if record.json()['id'] == 3:\n        raise ValueError('three')\n    return record",
        ),
        encoding="utf-8",
    )
    doc = yaml.safe_load(path.read_text())
    doc["processors"][0]["config"]["on_error"] = "skip"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "dataflare", "--log-format", "json", "run", "--quiet", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    logs = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert any(
        entry["logger"] == "dataflare.pipeline"
        and entry["level"] == "WARNING"
        and "ValueError: three" in entry["message"]
        for entry in logs
    ), done.stderr
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in logs)


HOLD_AT = 120  # the record the plugin waits on while the test scrapes

HOLDING_PLUGIN = """
import os
import time

import dataflare


@dataflare.map
def hold(record):
    document = record.json()
    if document["id"] == 7:
        raise ValueError("seven is refused")
    if document["id"] == {hold_at}:
        # Tell the test the run is mid-way, then wait for it to have scraped.
        open({ready!r}, "w").close()
        while not os.path.exists({go!r}):
            time.sleep(0.01)
    return record
"""


def families(text: str) -> dict[str, str]:
    """Every family of a scrape by its exposed name, with its TYPE."""
    from prometheus_client.parser import text_string_to_metric_families

    return {family.name: family.type for family in text_string_to_metric_families(text)}


def test_a_running_pipeline_exposes_the_families_operators_alert_on(tmp_path: Path) -> None:
    """Scraped mid-run over HTTP: latency histograms in seconds, checkpoint age, remaining
    input bytes, dead letters, retries, worker restarts and the process families, each
    with Prometheus' conventional name and type."""
    import threading
    import time as clock

    ready, go = tmp_path / "ready", tmp_path / "go"
    (tmp_path / "hold.py").write_text(
        HOLDING_PLUGIN.format(hold_at=HOLD_AT, ready=str(ready), go=str(go)), encoding="utf-8"
    )
    now_ms = int(clock.time() * 1000)
    (tmp_path / "in.jsonl").write_text(
        "".join(json.dumps({"id": i, "ts": now_ms}) + "\n" for i in range(300)), encoding="utf-8"
    )
    document = file_pipeline(
        "alerting",
        "hold",
        {"plugin_type": "map", "plugin_path": "hold.py", "on_error": "dead_letter"},
        timestamp_field="ts",
        dead_letter_file="failed.jsonl",
        batch={"size": 10, "linger_ms": 0},
        checkpoint={"interval_ms": 1},
    )
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    pipeline = Pipeline.from_file(path)
    pipeline.measure_record_latency = True
    server = MetricsServer(0, pipeline="alerting", health=pipeline.health)
    summaries = []
    runner = threading.Thread(
        target=lambda: summaries.append(pipeline.run(server, handle_signals=False))
    )
    runner.start()
    try:
        while not ready.exists():  # an event the plugin raises, not a time
            assert runner.is_alive(), "the run ended before reaching the held record"
            clock.sleep(0.01)
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as reply:
            text = reply.read().decode()
    finally:
        go.touch()
        runner.join(timeout=60)
        pipeline.close()
        server.close()
    assert summaries
    assert summaries[0].status == "completed"
    found = families(text)
    expected = {
        "dataflare_stage_batch_duration_seconds": "histogram",
        "dataflare_record_latency_seconds": "histogram",
        "dataflare_checkpoint_age_seconds": "gauge",
        "dataflare_last_checkpoint_timestamp_seconds": "gauge",
        "dataflare_source_remaining_bytes": "gauge",
        "dataflare_source_lag_offsets": "gauge",
        "dataflare_dead_letter_records": "counter",
        "dataflare_sink_retries": "counter",
        "dataflare_worker_restarts": "counter",
        "dataflare_records_in": "counter",
        "process_cpu_seconds": "counter",
        "process_resident_memory_bytes": "gauge",
        "process_open_fds": "gauge",
    }
    for name, kind in expected.items():
        assert found.get(name) == kind, (name, found.get(name))
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    labels = 'pipeline="alerting",role="{role}",stage="{stage}"'
    for role, stage in (("source", "in"), ("processor", "hold"), ("sink", "out")):
        stage_labels = labels.format(role=role, stage=stage)
        count = samples[f"dataflare_stage_batch_duration_seconds_count{{{stage_labels}}}"]
        assert count >= 1, (role, stage)
    sink = labels.format(role="sink", stage="out")
    assert samples[f"dataflare_record_latency_seconds_count{{{sink}}}"] >= 1
    # Held at record HOLD_AT of 300: most of the file's bytes are still unread... or read
    # ahead into the reader's buffer: either way a figure no larger than the file.
    source = labels.format(role="source", stage="in")
    remaining = samples[f"dataflare_source_remaining_bytes{{{source}}}"]
    assert 0 <= remaining <= (tmp_path / "in.jsonl").stat().st_size
    assert samples['dataflare_checkpoint_age_seconds{pipeline="alerting"}'] >= 0
    assert samples['dataflare_last_checkpoint_timestamp_seconds{pipeline="alerting"}'] > 0
    failed = labels.format(role="dead_letter", stage="failed")
    assert samples[f"dataflare_dead_letter_records_total{{{failed}}}"] == 1
    assert samples['dataflare_sink_retries_total{pipeline="alerting",stage="out"}'] == 0
    assert samples["process_resident_memory_bytes"] > 0


def test_dead_letters_are_logged_as_summaries_not_one_line_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """200 dead-lettered records: the first logged at once, the rest as one summary with
    the count; every record is in the dead-letter sink."""
    (tmp_path / "in.jsonl").write_text(
        "".join(json.dumps({"id": i}) + "\n" for i in range(400)), encoding="utf-8"
    )
    (tmp_path / "odd.py").write_text(
        "import dataflare\n\n@dataflare.map\ndef odd(record):\n"
        "    if record.json()['id'] % 2:\n        raise ValueError('odd')\n    return record\n",
        encoding="utf-8",
    )
    document = file_pipeline(
        "letters",
        "odd",
        {"plugin_type": "map", "plugin_path": "odd.py", "on_error": "dead_letter"},
        dead_letter_file="failed.jsonl",
        batch={"size": 16, "linger_ms": 0},
    )
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    pipeline = Pipeline.from_file(path)
    try:
        with caplog.at_level(logging.WARNING, logger="dataflare.pipeline"):
            summary = pipeline.run(handle_signals=False)
    finally:
        pipeline.close()
    assert summary.status == "completed"
    assert len((tmp_path / "failed.jsonl").read_text().splitlines()) == 200
    lines = [r.getMessage() for r in caplog.records if "dead-lettered" in r.getMessage()]
    assert lines[0].startswith("processor 'odd' dead-lettered a record: ")
    assert "ValueError: odd" in lines[0]
    # The other 199 in summaries (one per interval; a fast run has one).
    counted = 0
    for line in lines[1:]:
        match = re.search(r"dead-lettered ([\d,]+) more record\(s\)", line)
        assert match is not None, line
        counted += int(match.group(1).replace(",", ""))
    assert counted == 199
    assert len(lines) < 10


def test_a_partitioned_source_has_lag_and_position_per_partition() -> None:
    """A source whose backlog names partitions (the Kafka source's) gets one lag and one
    position series per partition beside its total lag."""
    from dataflare_host.connectors import Backlog, PartitionLag
    from dataflare_host.pipeline._stats import StageStats

    server = MetricsServer(0, pipeline="topics")
    try:
        stage = StageStats("in", "source", "kafka")
        stage.backlog = Backlog(7, "offsets", (PartitionLag("0", 5, 120), PartitionLag("1", 2, 98)))
        server.update([stage])
        samples = scrape(server.port)
    finally:
        server.close()
    labels = 'pipeline="topics",role="source",stage="in"'
    assert samples[f"dataflare_source_lag_offsets{{{labels}}}"] == 7
    for partition, lag, position in (("0", 5, 120), ("1", 2, 98)):
        named = f'{{partition="{partition}",{labels}}}'
        assert samples[f"dataflare_source_partition_lag_offsets{named}"] == lag
        assert samples[f"dataflare_source_partition_position_offsets{named}"] == position


def test_the_progress_shows_what_a_partitioned_source_has_left() -> None:
    """The plain progress line and the summary table give the source's total lag and its
    partitions furthest behind (at most four, then how many more), with their positions."""
    from rich.console import Console

    from dataflare_host.cli._progress import progress_line, summary_table
    from dataflare_host.connectors import Backlog, PartitionLag
    from dataflare_host.pipeline._stats import StageStats

    stage = StageStats("in", "source", "kafka", records_out=300)
    parts = tuple(PartitionLag(str(p), lag, 100 + p) for p, lag in enumerate((4, 9, 0, 7, 1, 3)))
    stage.backlog = Backlog(24, "offsets", parts)
    line = progress_line("topics", [stage])
    assert line.endswith(
        "rec/s, 24 offsets left: p1 9 at 101, p3 7 at 103, p0 4 at 100, p5 3 at 105, +2 partitions)"
    ), line
    console = Console(width=120, file=io.StringIO(), color_system=None)
    console.print(summary_table([stage], "topics"))
    printed = console.file.getvalue()  # type: ignore[attr-defined]
    left = [
        cells[-1]
        for cells in (
            [cell.strip() for cell in row.split("│")[1:-1]] for row in printed.splitlines()
        )
        if len(cells) == 9
    ]
    assert left[:6] == [
        "24 offsets",
        "p1 9 at 101",
        "p3 7 at 103",
        "p0 4 at 100",
        "p5 3 at 105",
        "+2 partitions",
    ]


def test_json_progress_carries_what_a_source_has_left() -> None:
    """``--log-format json`` progress: a source's ``left``, with its partitions when it has
    them; a stage that cannot tell has no ``left`` at all."""
    from dataflare_host.cli._run_output import stage_fields
    from dataflare_host.connectors import Backlog, PartitionLag
    from dataflare_host.pipeline._stats import StageStats

    topic = StageStats("in", "source", "kafka")
    topic.backlog = Backlog(3, "offsets", (PartitionLag("0", 3, 40),))
    files = StageStats("files", "source", "file")
    files.backlog = Backlog(2048, "bytes")
    mapped = StageStats("m", "processor", "map")
    fields = {
        row["stage"]: row for row in json.loads(json.dumps(stage_fields([topic, files, mapped])))
    }
    assert fields["in"]["left"] == {
        "amount": 3,
        "unit": "offsets",
        "partitions": [{"partition": "0", "lag": 3, "position": 40}],
    }
    assert fields["files"]["left"] == {"amount": 2048, "unit": "bytes"}
    assert "left" not in fields["m"]
