"""Operators' views of a run: Prometheus metrics and JSON logs."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import yaml

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
