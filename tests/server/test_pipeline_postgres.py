"""PostgreSQL -> plugins -> PostgreSQL pipelines, and at-least-once under SIGKILL.

Real servers: the session's PostgreSQL from tests/support/servers.py.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.paths import EXAMPLES
from support.servers import PostgresServer

from dataflare_host import Pipeline

pytestmark = pytest.mark.server

DOUBLE_AMOUNT = '''"""Double a JSON event's amount (slowly, so that a run can be killed mid-way)."""
import json
import time

import dataflare


@dataflare.map(params={"delay_ms": "0"})
def double_amount(record: dataflare.Record, params: dict[str, str]) -> dataflare.Record:
    time.sleep(float(params["delay_ms"]) / 1000)
    event = json.loads(record.value)
    event["amount"] *= 2
    return record.evolve(value=json.dumps(event))
'''


def _pipeline_yaml(
    source_dsn: str, sink_dsn: str, *, delay_ms: int, batch: int, filter_source: str, jsonl: bool
) -> str:
    filter_path = EXAMPLES / "json_field_filter.py"
    plugin_path = filter_path.with_suffix(".wasm") if filter_source == "wasm" else filter_path
    copy_sink = (
        """
  - id: copy
    type: plugin
    config: {plugin_type: file, connection: {path: delivered.jsonl}}"""
        if jsonl
        else ""
    )
    return f"""
name: pg-to-pg
batch: {{size: {batch}, linger_ms: 20}}
checkpoint: {{path: pg.checkpoint.json, interval_ms: 50}}
sources:
  - id: events
    type: plugin
    config:
      plugin_type: postgres
      connection: {{dsn: "{source_dsn}", table: events, stop_when_caught_up: true}}
processors:
  - id: active
    type: plugin
    config:
      plugin_type: filter
      plugin_source: {filter_source}
      plugin_path: {plugin_path}
  - id: double
    type: plugin
    config:
      plugin_type: map
      plugin_path: double_amount.py
      params: {{delay_ms: "{delay_ms}"}}
sinks:
  - id: warehouse
    type: plugin
    config:
      plugin_type: postgres
      connection: {{dsn: "{sink_dsn}", table: active_events, key_columns: [id]}}{copy_sink}
"""


def _setup(server: PostgresServer, rows: int) -> tuple[str, str, set[tuple[int, str, int]]]:
    source = server.create_database("src")
    sink = server.create_database("dst")
    server.execute(source, "CREATE TABLE events (id int PRIMARY KEY, status text, amount int)")
    statuses = ("active", "paused", "deleted")
    server.execute(
        source,
        "INSERT INTO events SELECT i, (ARRAY['active','paused','deleted'])[1 + i %% 3], i %% 50 "
        "FROM generate_series(1, %s) AS i",
        (rows,),
    )
    server.execute(sink, "CREATE TABLE active_events (id int PRIMARY KEY, status text, amount int)")
    expected = {
        (i, "active", (i % 50) * 2) for i in range(1, rows + 1) if statuses[i % 3] == "active"
    }
    return source, sink, expected


def _table(server: PostgresServer, dsn: str) -> set[tuple[int, str, int]]:
    rows = server.execute(dsn, "SELECT id, status, amount FROM active_events")
    return {(int(i), str(s), int(a)) for i, s, a in rows}  # type: ignore[call-overload]


@pytest.mark.parametrize("filter_source", ["native", "wasm"])
def test_postgres_to_plugins_to_postgres(
    postgres_server: PostgresServer,
    tmp_path: Path,
    filter_source: str,
    request: pytest.FixtureRequest,
) -> None:
    """Rows flow from a table through a filter (native or WASM) and a map into another table."""
    source, sink, expected = _setup(postgres_server, 600)
    (tmp_path / "double_amount.py").write_text(DOUBLE_AMOUNT)
    yaml_text = _pipeline_yaml(
        source, sink, delay_ms=0, batch=100, filter_source=filter_source, jsonl=False
    )
    if filter_source == "wasm":
        built = request.getfixturevalue("example_components")["json_field_filter"]
        yaml_text = yaml_text.replace(str(EXAMPLES / "json_field_filter.wasm"), str(built))
    (tmp_path / "pipeline.yaml").write_text(yaml_text)
    pipeline = Pipeline.from_file(tmp_path / "pipeline.yaml")
    try:
        summary = pipeline.run(handle_signals=False)
    finally:
        pipeline.close()
    assert summary.status == "completed", summary.error
    assert _table(postgres_server, sink) == expected
    by_stage = {s.stage: s for s in summary.stats}
    assert by_stage["events"].records_out == 600
    assert by_stage["active"].filtered == 600 - len(expected)
    assert by_stage["warehouse"].records_in == len(expected)


@pytest.mark.slow
def test_sigkill_at_random_points_loses_nothing_and_upserts_exactly(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """Killed with SIGKILL 12 times mid-run and restarted: every record arrives at least
    once in the file copy, and the upserted table ends equal to the expected set."""
    rows = 9000  # 3000 active, 5 ms each in the map: ~15 s of work to interrupt
    source, sink, expected = _setup(postgres_server, rows)
    (tmp_path / "double_amount.py").write_text(DOUBLE_AMOUNT)
    (tmp_path / "pipeline.yaml").write_text(
        _pipeline_yaml(source, sink, delay_ms=5, batch=40, filter_source="native", jsonl=True)
    )
    command = [str(Path(sys.executable).with_name("dataflare")), "run", "--quiet", "pipeline.yaml"]
    rng = random.Random(20261128)
    kills = 0
    progress: list[int] = []
    while kills < 12:
        child = subprocess.Popen(
            command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(0.6, 1.8))  # start-up takes ~0.6 s of it
        if child.poll() is not None:
            break  # finished before we could kill it: the data is all through
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        kills += 1
        progress.append(len(_table(postgres_server, sink)))
    assert kills >= 10, f"the pipeline finished after only {kills} kills: make it slower"
    final = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert final.returncode == 0, final.stderr

    delivered = [
        json.loads(line) for line in (tmp_path / "delivered.jsonl").read_text().splitlines()
    ]
    delivered_ids = {event["id"] for event in delivered}
    assert delivered_ids == {row[0] for row in expected}  # at least once, nothing lost
    assert _table(postgres_server, sink) == expected  # upserts: exactly the expected set
    # The kills really landed mid-run: the table grew between them.
    assert progress[0] < len(expected)
    assert len(delivered) >= len(expected)
