"""PostgreSQL -> a map -> the Elasticsearch sink on a real OpenSearch node, under SIGKILL.

The pipeline process is killed at random points 10 times while it
writes to the index, restarted each time, then run to the end; the index must hold exactly
one document per source row, each equal to its expected body (ids from a field, so a replay
after a crash overwrites instead of duplicating).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from support.servers import OpenSearchServer, PostgresServer

pytestmark = [pytest.mark.server, pytest.mark.slow]

ROWS = 3500
KILLS = 10

RESHAPE = '''"""Reshape a users row into its search document (slowly, so a run can be killed)."""
import json
import time

import dataflare


@dataflare.map(params={"delay_ms": "0"})
def reshape(record: dataflare.Record, params: dict[str, str]) -> dataflare.Record:
    time.sleep(float(params["delay_ms"]) / 1000)
    row = json.loads(record.value)
    document = {"user_id": row["id"], "name": row["name"].title(), "score": row["score"] * 3}
    return record.evolve(value=json.dumps(document))
'''


def _pipeline_yaml(dsn: str, url: str, index: str) -> str:
    return f"""
name: pg-to-search
batch: {{size: 40, linger_ms: 20}}
checkpoint: {{path: search.checkpoint.json, interval_ms: 50}}
sources:
  - id: users
    type: plugin
    config:
      plugin_type: source
      plugin_name: postgres
      connection: {{dsn: "{dsn}", table: users, stop_when_caught_up: true}}
processors:
  - id: reshape
    type: plugin
    config:
      plugin_type: transform
      plugin_path: reshape.py
      params: {{delay_ms: "4"}}
sinks:
  - id: search
    type: plugin
    config:
      plugin_type: sink
      plugin_name: elasticsearch
      connection: {{url: "{url}", index: "{index}", id_field: user_id, batch_size: 200}}
"""


def _expected(n: int) -> dict[str, object]:
    return {"user_id": n, "name": f"User {n} Of Team {n % 7}", "score": (n % 97) * 3}


def test_sigkill_at_random_points_ends_with_exactly_one_document_per_row(
    postgres_server: PostgresServer, opensearch_server: OpenSearchServer, tmp_path: Path
) -> None:
    """10 SIGKILLs mid-write, then a run to the end: count == rows, every body as expected."""
    dsn = postgres_server.create_database("kill")
    postgres_server.execute(dsn, "CREATE TABLE users (id int PRIMARY KEY, name text, score int)")
    postgres_server.execute(
        dsn,
        "INSERT INTO users SELECT n, 'user ' || n || ' of team ' || (n %% 7), n %% 97 "
        "FROM generate_series(1, %s) AS n",
        (ROWS,),
    )
    index = f"kill-{uuid.uuid4().hex[:10]}"
    opensearch_server.request(
        "PUT", f"/{index}", {"settings": {"number_of_shards": 1, "number_of_replicas": 0}}
    )
    (tmp_path / "reshape.py").write_text(RESHAPE)
    (tmp_path / "pipeline.yaml").write_text(_pipeline_yaml(dsn, opensearch_server.url, index))
    command = [sys.executable, "-m", "dataflare", "run", "--quiet", "pipeline.yaml"]
    rng = random.Random(20261130)
    progress: list[int] = []
    # No bound on the whole: each restart must write within 30 s and the last run end
    # within 90 s (progress, not the total, which a loaded machine stretches).
    errors = tmp_path / "stderr.txt"
    for _ in range(KILLS):
        with errors.open("wb") as stderr:
            child = subprocess.Popen(
                command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=stderr
            )
        # Each kill lands while the run is writing: first the index grows past what the
        # runs before wrote, then a random moment later the kill comes. A fixed cadence
        # (start-up is ~0.7 s on an idle machine) killed every restart of a loaded one
        # before its first write (a cold CI run building components meanwhile).
        before = progress[-1] if progress else 0
        deadline = time.monotonic() + 30
        while opensearch_server.count(index) <= before:
            assert child.poll() is None, (
                f"the pipeline ended (exit {child.returncode}) before writing; it wrote "
                f"{opensearch_server.count(index)} of {ROWS} documents: {errors.read_text()!r}"
            )
            assert time.monotonic() < deadline, f"no document written in 30 s: {progress}"
            time.sleep(0.1)
        time.sleep(rng.uniform(0.0, 1.0))
        assert child.poll() is None, (
            f"the pipeline ended (exit {child.returncode}) before the kill; it wrote "
            f"{opensearch_server.count(index)} of {ROWS} documents: {errors.read_text()!r}"
        )
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        progress.append(opensearch_server.count(index))
    final = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=90, check=False
    )
    assert final.returncode == 0, final.stderr or final.stdout

    assert opensearch_server.count(index) == ROWS
    documents = opensearch_server.documents(index)
    assert documents == {str(n): _expected(n) for n in range(1, ROWS + 1)}
    # The kills really landed mid-write: the index grew between them, never reaching the end.
    assert progress[-1] < ROWS
    assert progress == sorted(progress)
    assert len(set(progress)) >= KILLS // 2, progress
