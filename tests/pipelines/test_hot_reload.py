"""Hot reload: a processor whose file changes on disk is swapped in between batches.

A rate-limited generator keeps the pipeline running for about a second while the
test rewrites the plugin file (atomically, as editors save). Records before the
swap carry the old behaviour, records after it the new one; none is lost or
doubled. A file that fails to load leaves the old plugin running.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import EXAMPLES

from dataflare_host.pipeline._runner import Pipeline, RunSummary

COUNT = 2000

TAGGER = '''\
"""Tag each JSON record with its plugin version."""

import json

import dataflare


@dataflare.map
def tagger(record: dataflare.Record) -> dataflare.Record:
    document = record.json()
    document["v"] = "{version}"
    return record.evolve(value=json.dumps(document, separators=(",", ":")))
'''

FIELD_DIFFERS_FILTER = '''\
"""Keep JSON records whose ``field`` differs from ``value`` (json_field_filter negated)."""

import json

import dataflare


@dataflare.filter(params={"field": "status", "value": "active"})
def field_differs(record: dataflare.Record, params: dict[str, str]) -> bool:
    return json.loads(record.value).get(params["field"]) != params["value"]
'''


def replace_atomically(target: Path, content: bytes) -> None:
    """Write ``content`` to ``target`` the way editors save: a new file renamed over it."""
    partial = target.with_name(f".{target.name}.partial")
    partial.write_bytes(content)
    os.replace(partial, target)


def write_pipeline(directory: Path, kind: str, plugin: Path) -> Path:
    config: dict[str, Any] = {"plugin_type": kind, "plugin_path": plugin.name}
    if plugin.suffix == ".wasm":
        config["plugin_source"] = "wasm"
    document = {
        "name": "reload",
        "batch": {"size": 50, "linger_ms": 10},
        "sources": [{"id": "gen", "type": "plugin", "config": {
            "plugin_type": "generator", "connection": {"count": COUNT, "rate": 2000}}}],
        "processors": [{"id": "proc", "type": "plugin", "config": config}],
        "sinks": [{"id": "out", "type": "plugin", "config": {
            "plugin_type": "file", "connection": {"path": "out.jsonl"}}}],
    }
    file = directory / "pipeline.yaml"
    file.write_text(yaml.safe_dump(document, sort_keys=False))
    return file


def run_and_change(file: Path, change: Any, after_records: int = 300) -> tuple[RunSummary, bool]:
    """Run ``file`` in a thread; once ``after_records`` reached the sink, call ``change()``.

    Returns the summary and whether the change happened while the run was still going.
    """
    pipeline = Pipeline.from_file(file)
    result: list[RunSummary] = []
    worker = threading.Thread(
        target=lambda: result.append(pipeline.run(None, handle_signals=False)))
    worker.start()
    try:
        deadline = time.monotonic() + 60
        sink = pipeline.stats[-1]
        while sink.records_in < after_records and worker.is_alive():
            assert time.monotonic() < deadline, "the pipeline made no progress"
            time.sleep(0.01)
        changed_mid_run = worker.is_alive()
        change()
        worker.join(timeout=120)
        assert not worker.is_alive()
    finally:
        pipeline.stop()
        worker.join(timeout=10)
        pipeline.close()
    return result[0], changed_mid_run


def versions(out: Path) -> tuple[list[int], list[str]]:
    documents = [json.loads(line) for line in out.read_text().splitlines()]
    return [d["id"] for d in documents], [d["v"] for d in documents]


def test_changed_native_plugin_is_swapped_in_between_batches(tmp_path: Path) -> None:
    """Every record once, in order: a v1 prefix, then only v2; one reload counted."""
    plugin = tmp_path / "tagger.py"
    plugin.write_text(TAGGER.format(version="v1"))
    file = write_pipeline(tmp_path, "map", plugin)
    summary, mid_run = run_and_change(
        file, lambda: replace_atomically(plugin, TAGGER.format(version="v2").encode()))
    assert mid_run
    assert summary.status == "completed"
    ids, tags = versions(tmp_path / "out.jsonl")
    assert ids == list(range(COUNT))
    swap = tags.index("v2")
    assert swap > 0
    assert tags == ["v1"] * swap + ["v2"] * (COUNT - swap)
    assert summary.stats[1].reloads == 1


def test_plugin_that_fails_to_load_keeps_the_old_one_running(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """A rewrite with a syntax error is logged; every record still gets the old behaviour."""
    plugin = tmp_path / "tagger.py"
    plugin.write_text(TAGGER.format(version="v1"))
    file = write_pipeline(tmp_path, "map", plugin)
    broken = TAGGER.format(version="v2").replace("def tagger(record: dataflare.Record)",
                                                  "def tagger(record: dataflare.Record")
    with caplog.at_level(logging.ERROR, logger="dataflare.pipeline"):
        summary, mid_run = run_and_change(file, lambda: replace_atomically(plugin, broken.encode()))
    assert mid_run
    assert summary.status == "completed"
    ids, tags = versions(tmp_path / "out.jsonl")
    assert ids == list(range(COUNT))
    assert set(tags) == {"v1"}
    assert summary.stats[1].reloads == 0
    errors = [r for r in caplog.records
              if r.name == "dataflare.pipeline" and r.levelno == logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    message = errors[0].getMessage()
    assert "hot reload of processor 'proc' failed; the previous version keeps running" in message
    assert "syntax error" in message


@pytest.mark.wasm
@pytest.mark.slow
def test_changed_wasm_component_is_swapped_in_between_batches(
    tmp_path: Path, component_builder: Any,
) -> None:
    """Copying a new .wasm over the running one: active records before, the others after."""
    from dataflare_host.wasm.build._cache import component_for

    # v1 is the content-cached json_field_filter component other tests use too, so
    # this test builds (and compiles) only v2.
    v1 = component_for(EXAMPLES / "json_field_filter.py")
    v2_source = tmp_path / "field_differs.py"
    v2_source.write_text(FIELD_DIFFERS_FILTER)
    v2 = component_builder(v2_source)
    plugin = tmp_path / "status.wasm"
    shutil.copy(v1, plugin)
    file = write_pipeline(tmp_path, "filter", plugin)
    summary, mid_run = run_and_change(
        file, lambda: replace_atomically(plugin, v2.read_bytes()), after_records=150)
    assert mid_run
    assert summary.status == "completed"
    ids = [json.loads(line)["id"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]

    def expected(swap: int) -> list[int]:
        return [i for i in range(swap) if i % 3 == 0] + [i for i in range(swap, COUNT)
                                                         if i % 3 != 0]

    swaps = [swap for swap in range(COUNT + 1) if expected(swap) == ids]
    assert swaps, ids
    assert swaps[0] > 0, "some records ran through v1"
    assert swaps[-1] < COUNT, "some records ran through v2"
    assert summary.stats[1].reloads == 1
