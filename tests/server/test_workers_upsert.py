"""Worker processes SIGKILLed mid-run, with an upsert sink: nothing lost, nothing written twice.

Ten kills, while the pipeline writes both a JSONL file (which must be the
expected list, in order) and a PostgreSQL table upserted on ``id`` (which must
be the expected set exactly): a killed worker's batch is retried on another,
and nothing is lost or written twice. The same with Ray actors is in
``tests/cluster/test_ray_engine.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from support.servers import PostgresServer

sys.path.insert(0, str(Path(__file__).parent.parent / "pipelines"))
from test_workers import (
    add_upsert_sink,
    assert_upserted,
    expected_filter_map,
    filter_map_held,
    outputs,
    pipeline_file,
    run_killing_ten,
    write_input,
)

pytestmark = pytest.mark.server


def test_sigkill_of_workers_mid_run_upserts_exactly(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    count = 300_000
    write_input(tmp_path, count)
    held = tmp_path / "held"
    file = pipeline_file(tmp_path, filter_map_held(held), workers="2", batch=500)
    dsn = add_upsert_sink(file, postgres_server)
    run_killing_ten(file, within_s=90, every_s=0.15, held=held)
    assert outputs(tmp_path) == expected_filter_map(count)
    assert_upserted(postgres_server, dsn, count)
