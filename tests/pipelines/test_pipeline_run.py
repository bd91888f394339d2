"""Running pipelines: outputs, formats, checkpoints, error policies, backpressure, the demo.

Pipelines run in-process through ``host._pipeline.Pipeline`` (no progress
display, no signal handlers) unless a test is about the command line. Every
expected output is computed in the test from the input it wrote, not by the
code under test.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml
from support.output import summary_rows
from support.paths import EXAMPLES, REPO

from dataflare import Record
from dataflare_host.connectors import ConnectorRegistry, Sink
from dataflare_host.pipeline._runner import Pipeline, RunSummary

PLUGINS = Path(__file__).parent.parent / "pipeline_fixtures" / "plugins"
STATUSES = ("active", "paused", "deleted")


# -- building pipeline files ----------------------------------------------------


def connector(id: str, plugin_type: str, **connection: Any) -> dict[str, Any]:
    """A ``sources:``/``sinks:`` entry."""
    return {"id": id, "type": "plugin",
            "config": {"plugin_type": plugin_type, "connection": connection}}


def processor(id: str, kind: str, path: Path, params: Mapping[str, str] | None = None,
              **options: Any) -> dict[str, Any]:
    """A ``processors:`` entry for the plugin file at ``path``."""
    config = {"plugin_type": kind, "plugin_path": str(path), "params": dict(params or {})}
    if str(path).endswith(".wasm"):
        config["plugin_source"] = "wasm"
    return {"id": id, "type": "plugin", "config": {**config, **options}}


def write_pipeline(directory: Path, *, sources: Sequence[dict[str, Any]],
                   sinks: Sequence[dict[str, Any]], processors: Sequence[dict[str, Any]] = (),
                   **top: Any) -> Path:
    """Write a pipeline file into ``directory`` (checkpoints go beside it)."""
    document = {"name": "test", "sources": list(sources), "processors": list(processors),
                "sinks": list(sinks), **top}
    file = directory / "pipeline.yaml"
    file.write_text(yaml.safe_dump(document, sort_keys=False))
    return file


def run(file: Path, registry: ConnectorRegistry | None = None,
        stop_after_records: int | None = None) -> RunSummary:
    """Load and run the pipeline in ``file``; optionally stop() once a sink got that many."""
    pipeline = Pipeline.from_file(file, registry)
    done = threading.Event()

    def stop_when_written() -> None:
        sink = pipeline.stats[-1]
        while not done.is_set() and sink.records_in < (stop_after_records or 0):
            time.sleep(0.005)
        pipeline.stop()

    watcher = threading.Thread(target=stop_when_written)
    if stop_after_records is not None:
        watcher.start()
    try:
        return pipeline.run(None, handle_signals=False)
    finally:
        done.set()
        if stop_after_records is not None:
            watcher.join()
        pipeline.close()


def compact(document: Any) -> str:
    return json.dumps(document, separators=(",", ":"))


def write_jsonl(path: Path, documents: Sequence[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(compact(d) + "\n" for d in documents))
    return path


def read_jsonl(path: Path) -> list[Any]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def generated(index: int) -> dict[str, Any]:
    """What the generator source documents to emit at ``index``."""
    return {"id": index, "status": STATUSES[index % 3], "name": f"user-{index:06d}",
            "amount": index % 100, "tags": ["a", "b"][: index % 3]}


def stage(summary: RunSummary, name: str) -> Any:
    (found,) = [s for s in summary.stats if s.stage == name]
    return found


# -- fixtures -------------------------------------------------------------------


@pytest.fixture(scope="module")
def json_filter_wasm(component_builder: Any) -> Path:
    """guest_examples/json_field_filter.py as a component, built once.

    Built through the same content-keyed cache ``plugin_source: wasm`` uses for a
    ``.py`` path (``component_builder`` has pointed DATAFLARE_CACHE_DIR at the
    session directory), so the README demo below reuses this build and its
    compiled artifact instead of paying for a second one.
    """
    from dataflare_host.wasm.build._cache import component_for

    return component_for(EXAMPLES / "json_field_filter.py")


# -- outputs --------------------------------------------------------------------


def test_jsonl_through_native_filter_and_map_gives_exactly_the_expected_lines(
    tmp_path: Path,
) -> None:
    """file JSONL -> keep even ids -> tag -> JSONL writes the kept, tagged lines in order."""
    documents = [{"id": i, "name": f"n{i}", "nested": {"k": [i, None]}} for i in range(203)]
    write_jsonl(tmp_path / "data" / "in.jsonl", documents)
    file = write_pipeline(
        tmp_path,
        sources=[connector("in", "file", path="data/in.jsonl")],
        processors=[processor("even", "filter", PLUGINS / "keep_even.py"),
                    processor("tag", "map", PLUGINS / "tag.py", {"tag": "t1"})],
        sinks=[connector("out", "file", path="out/out.jsonl")],
        batch={"size": 7, "linger_ms": 0},
    )
    summary = run(file)
    expected = [compact({**d, "tag": "t1"}) for d in documents if d["id"] % 2 == 0]
    assert (summary.status, summary.error) == ("completed", None)
    assert (tmp_path / "out" / "out.jsonl").read_text().splitlines() == expected
    assert stage(summary, "in").records_out == 203
    even = stage(summary, "even")
    assert (even.records_in, even.records_out, even.filtered, even.errored) == (203, 102, 101, 0)
    assert (stage(summary, "out").records_in, stage(summary, "out").records_out) == (102, 102)


@pytest.mark.wasm
def test_wasm_filter_gives_the_same_output_as_the_native_one(
    tmp_path: Path, json_filter_wasm: Path,
) -> None:
    """The same filter, run as a WASM component or natively, writes identical files."""
    outputs = {}
    for flavour, path in (("native", EXAMPLES / "json_field_filter.py"),
                          ("wasm", json_filter_wasm)):
        directory = tmp_path / flavour
        directory.mkdir()
        file = write_pipeline(
            directory,
            sources=[connector("gen", "generator", count=1500)],
            processors=[processor("paused", "filter", path, {"field": "status", "value": "paused"}),
                        processor("tag", "map", PLUGINS / "tag.py", {"tag": flavour[:1]})],
            sinks=[connector("out", "file", path="out.jsonl")],
            batch={"size": 100, "linger_ms": 0},
        )
        assert run(file).status == "completed"
        outputs[flavour] = (directory / "out.jsonl").read_text().replace('"tag":"w"', '"tag":"n"')
    expected = [compact({**generated(i), "tag": "n"}) for i in range(1500) if i % 3 == 1]
    assert outputs["native"].splitlines() == expected
    assert outputs["wasm"] == outputs["native"]


def test_directory_source_reads_its_visible_files_in_name_order(tmp_path: Path) -> None:
    """A directory path reads every non-hidden file, sorted by name, each line once."""
    write_jsonl(tmp_path / "data" / "b.jsonl", [{"id": 3}, {"id": 4}])
    write_jsonl(tmp_path / "data" / "a.jsonl", [{"id": 1}, {"id": 2}])
    write_jsonl(tmp_path / "data" / "c.jsonl", [{"id": 5}])
    write_jsonl(tmp_path / "data" / ".hidden.jsonl", [{"id": 99}])
    file = write_pipeline(
        tmp_path,
        sources=[connector("in", "file", path="data", format="jsonl")],
        sinks=[connector("out", "file", path="out.jsonl")],
        batch={"size": 2, "linger_ms": 0},
    )
    assert run(file).status == "completed"
    assert [d["id"] for d in read_jsonl(tmp_path / "out.jsonl")] == [1, 2, 3, 4, 5]


def test_csv_source_and_sink_round_trip_rows_through_a_map(tmp_path: Path) -> None:
    """CSV rows become JSON objects, pass a map, and are written as CSV rows with a header."""
    (tmp_path / "people.csv").write_text('id,name\n1,ann\n2,"bob, jr"\n3,cy\n')
    file = write_pipeline(
        tmp_path,
        sources=[connector("in", "file", path="people.csv")],
        processors=[processor("tag", "map", PLUGINS / "tag.py", {"tag": "x"})],
        sinks=[connector("out", "file", path="out.csv")],
    )
    assert run(file).status == "completed"
    with (tmp_path / "out.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows == [{"id": "1", "name": "ann", "tag": "x"},
                    {"id": "2", "name": "bob, jr", "tag": "x"},
                    {"id": "3", "name": "cy", "tag": "x"}]


def test_lines_source_and_sink_pass_plain_text_skipping_blank_lines(tmp_path: Path) -> None:
    """Plain lines are records as they are; blank lines are skipped; the filter keeps matches."""
    (tmp_path / "log.txt").write_text("an error here\nall fine\n\n  \nanother error\n")
    file = write_pipeline(
        tmp_path,
        sources=[connector("in", "file", path="log.txt")],
        processors=[processor("errors", "filter", EXAMPLES / "contains_filter.py",
                              {"needle": "error"})],
        sinks=[connector("out", "file", path="out.txt")],
    )
    summary = run(file)
    assert summary.status == "completed"
    assert (tmp_path / "out.txt").read_text() == "an error here\nanother error\n"
    assert stage(summary, "in").records_out == 3


def test_generator_source_emits_count_records_in_order(tmp_path: Path) -> None:
    """``count: N`` emits documents 0..N-1, each as documented, then the run completes."""
    file = write_pipeline(
        tmp_path,
        sources=[connector("gen", "generator", count=777)],
        sinks=[connector("out", "file", path="out.jsonl")],
        batch={"size": 100, "linger_ms": 0},
    )
    assert run(file).status == "completed"
    assert read_jsonl(tmp_path / "out.jsonl") == [generated(i) for i in range(777)]


# -- checkpoints ----------------------------------------------------------------


def generator_pipeline(directory: Path, count: int | None, rate: float | None,
                       **top: Any) -> Path:
    options: dict[str, Any] = {"count": count}
    if rate is not None:
        options["rate"] = rate
    return write_pipeline(
        directory,
        sources=[connector("gen", "generator", **options)],
        sinks=[connector("out", "file", path="out.jsonl")],
        **{"batch": {"size": 50, "linger_ms": 10}, **top},
    )


def test_second_run_resumes_from_the_checkpoint_and_writes_nothing_new(tmp_path: Path) -> None:
    """After a completed run, a rerun resumes at the end: same output, nothing written."""
    file = generator_pipeline(tmp_path, count=300, rate=None)
    first = run(file)
    after_first = (tmp_path / "out.jsonl").read_text()
    second = run(file)
    assert (first.status, first.resumed) == ("completed", False)
    assert (second.status, second.resumed) == ("completed", True)
    assert (tmp_path / "out.jsonl").read_text() == after_first
    assert len(after_first.splitlines()) == 300
    assert stage(second, "out").records_in == 0


def test_reset_checkpoint_reruns_from_the_start(tmp_path: Path) -> None:
    """Forgetting the checkpoint makes the next run read every record again."""
    file = generator_pipeline(tmp_path, count=120, rate=None)
    run(file)
    pipeline = Pipeline.from_file(file)
    try:
        pipeline.checkpoints.reset()
        summary = pipeline.run(None, handle_signals=False)
    finally:
        pipeline.close()
    assert (summary.status, summary.resumed) == ("completed", False)
    ids = [d["id"] for d in read_jsonl(tmp_path / "out.jsonl")]
    assert ids == list(range(120)) * 2


def test_graceful_stop_then_restart_delivers_every_record_exactly_once(tmp_path: Path) -> None:
    """stop() mid-run drains and checkpoints; the restart continues right after the last record."""
    file = generator_pipeline(tmp_path, count=2000, rate=4000,
                              checkpoint={"interval_ms": 100})
    first = run(file, stop_after_records=200)
    written = len(read_jsonl(tmp_path / "out.jsonl"))
    assert first.status == "stopped"
    assert 0 < written < 2000
    checkpoint = json.loads((tmp_path / ".dataflare" / "test.checkpoint.json").read_text())
    assert checkpoint["positions"] == {"gen": {"next": written}}
    second = run(file)
    assert (second.status, second.resumed) == ("completed", True)
    assert [d["id"] for d in read_jsonl(tmp_path / "out.jsonl")] == list(range(2000))


def test_aggregate_state_survives_a_restart(tmp_path: Path) -> None:
    """A running sum over two runs (graceful stop in between) equals the sum over one run."""
    totals = {}
    for name, stop_after in (("two-runs", 200), ("one-run", None)):
        directory = tmp_path / name
        directory.mkdir()
        file = write_pipeline(
            directory,
            sources=[connector("gen", "generator", count=2000, rate=4000)],
            processors=[processor("sum", "aggregate", EXAMPLES / "sum_aggregate.py",
                                  {"field": "amount"})],
            sinks=[connector("out", "file", path="out.jsonl", format="lines")],
            batch={"size": 50, "linger_ms": 10},
        )
        if stop_after is not None:
            assert run(file, stop_after_records=stop_after).status == "stopped"
            assert 0 < len((directory / "out.jsonl").read_text().splitlines()) < 2000
        assert run(file).status == "completed"
        totals[name] = [int(line) for line in (directory / "out.jsonl").read_text().splitlines()]
    running, expected = 0, []
    for index in range(2000):
        running += index % 100
        expected.append(running)
    assert totals["one-run"] == expected
    assert totals["two-runs"] == expected


# -- error policies -------------------------------------------------------------


def guarded_pipeline(directory: Path, on_error: str, bad: str, dead_letter: bool = False) -> Path:
    write_jsonl(directory / "records.jsonl", [{"id": i} for i in range(10)])
    top: dict[str, Any] = {"batch": {"size": 3, "linger_ms": 0}}
    if dead_letter:
        top["dead_letter"] = connector("dead", "file", path="dead.jsonl")
    return write_pipeline(
        directory,
        sources=[connector("in", "file", path="records.jsonl")],
        processors=[processor("guard", "map", PLUGINS / "fail_on_ids.py", {"bad": bad},
                              on_error=on_error)],
        sinks=[connector("out", "file", path="out.jsonl")],
        **top,
    )


def test_fail_policy_stops_naming_the_processor_plugin_offset_and_record_line(
    tmp_path: Path,
) -> None:
    """on_error: fail stops the run; earlier batches are in the sink and checkpointed."""
    file = guarded_pipeline(tmp_path, "fail", bad="7")
    summary = run(file)
    assert (summary.status, summary.exit_code) == ("failed", 1)
    assert summary.error is not None
    for fragment in ("processor 'guard'", "plugin 'fail_on_ids' (map)", "record offset 7",
                     "ValueError: id 7 is on the bad list", "records.jsonl line 8"):
        assert fragment in summary.error, (fragment, summary.error)
    assert [d["id"] for d in read_jsonl(tmp_path / "out.jsonl")] == [0, 1, 2, 3, 4, 5]
    rerun = run(file)
    assert rerun.status == "failed"
    assert rerun.resumed
    assert [d["id"] for d in read_jsonl(tmp_path / "out.jsonl")] == [0, 1, 2, 3, 4, 5]


def test_skip_policy_counts_errored_records_and_passes_the_others(tmp_path: Path) -> None:
    """on_error: skip drops only the failing records and counts them as errored."""
    summary = run(guarded_pipeline(tmp_path, "skip", bad="2,5,9"))
    assert summary.status == "completed"
    assert [d["id"] for d in read_jsonl(tmp_path / "out.jsonl")] == [0, 1, 3, 4, 6, 7, 8]
    guard = stage(summary, "guard")
    assert (guard.records_in, guard.records_out, guard.errored) == (10, 7, 3)


def test_dead_letter_policy_writes_each_failed_record_with_its_error(tmp_path: Path) -> None:
    """on_error: dead_letter writes each failed record and its error fields to that sink."""
    summary = run(guarded_pipeline(tmp_path, "dead_letter", bad="2,5", dead_letter=True))
    assert summary.status == "completed"
    assert [d["id"] for d in read_jsonl(tmp_path / "out.jsonl")] == [0, 1, 3, 4, 6, 7, 8, 9]
    dead = read_jsonl(tmp_path / "dead.jsonl")
    assert [d["stage"] for d in dead] == ["guard", "guard"]
    for entry, bad in zip(dead, (2, 5), strict=True):
        assert entry["error"] == {
            "plugin": "fail_on_ids", "kind": "map", "offset": bad, "index": bad % 3,
            "error_type": "ValueError", "error_message": f"id {bad} is on the bad list",
            "record_key": None, "record_value": compact({"id": bad}),
            "location": entry["error"]["location"], "frames": entry["error"]["frames"],
        }
        assert entry["error"]["location"].startswith("fail_on_ids.py:")
        assert entry["record"]["value"] == compact({"id": bad})
        assert entry["record"]["offset"] == bad
        assert entry["record"]["metadata"] == {"file": "records.jsonl", "line": str(bad + 1)}
    assert stage(summary, "dead").records_in == 2
    assert stage(summary, "guard").errored == 2


def test_invalid_json_in_a_source_file_fails_naming_file_and_line(tmp_path: Path) -> None:
    """A line that is not JSON fails the run with file:line; the lines before it are delivered."""
    data = tmp_path / "data.jsonl"
    data.write_text('{"id": 0}\n{"id": 1}\n{"id": oops}\n{"id": 3}\n')
    file = write_pipeline(
        tmp_path,
        sources=[connector("in", "file", path="data.jsonl")],
        sinks=[connector("out", "file", path="out.jsonl")],
        batch={"size": 1, "linger_ms": 0},
    )
    summary = run(file)
    assert summary.status == "failed"
    assert summary.error is not None
    assert f"source 'in' failed: {data}:3: not valid JSON" in summary.error
    assert [d["id"] for d in read_jsonl(tmp_path / "out.jsonl")] == [0, 1]


# -- backpressure ---------------------------------------------------------------


@attrs.frozen
class SlowSinkConfig:
    delay_ms: int = 5


class SlowSink(Sink):
    """A sink that sleeps in every write and notes how far the source was ahead."""

    Config = SlowSinkConfig

    def __init__(self, config: SlowSinkConfig, params: Mapping[str, str]) -> None:
        super().__init__(config, params)
        self.written = 0
        self.ahead: list[int] = []
        self.records_read: Any = None

    def connect(self) -> None:
        pass

    def write(self, records: Sequence[Record]) -> None:
        # The main loop is the only writer, so `written` is exact here.
        self.ahead.append(self.records_read() - self.written)
        threading.Event().wait(self.config.delay_ms / 1000)
        self.written += len(records)

    def flush(self) -> None:
        pass


def test_slow_sink_keeps_the_source_at_most_queue_batches_plus_two_ahead(tmp_path: Path) -> None:
    """With a slow sink the bounded queue blocks the reader: it never runs far ahead."""
    registry = ConnectorRegistry.from_entry_points()
    registry.register_sink("slow", SlowSink)
    size, queued = 20, 2
    file = write_pipeline(
        tmp_path,
        sources=[connector("gen", "generator", count=2000)],
        sinks=[connector("slow", "slow", delay_ms=3)],
        batch={"size": size, "linger_ms": 0, "queue_batches": queued},
    )
    pipeline = Pipeline.from_file(file, registry)
    sink = pipeline.sinks[0]
    assert isinstance(sink, SlowSink)
    sink.records_read = lambda: pipeline.stats[0].records_out
    try:
        summary = pipeline.run(None, handle_signals=False)
    finally:
        pipeline.close()
    assert summary.status == "completed"
    assert sink.written == 2000
    assert max(sink.ahead) <= (queued + 2) * size
    # The bound was tested, not idle: the queue did fill up behind the slow sink.
    assert max(sink.ahead) >= queued * size


# -- the bundled demo -----------------------------------------------------------


@pytest.mark.wasm
def test_readme_demo_writes_the_active_events_tagged_by_tier(
    tmp_path: Path, json_filter_wasm: Path,
) -> None:
    """The README demo run writes every active event with its tier and prints a summary."""
    shutil.copytree(REPO / "examples", tmp_path / "examples",
                    ignore=shutil.ignore_patterns("out", ".dataflare"))
    shutil.copytree(REPO / "guest_examples", tmp_path / "guest_examples",
                    ignore=shutil.ignore_patterns("__pycache__"))
    exe = Path(sys.executable).parent / "dataflare"
    done = subprocess.run([str(exe), "run", "examples/pipeline.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    events = read_jsonl(REPO / "examples" / "data" / "events.jsonl")
    active = [e for e in events if e["status"] == "active"]
    expected = [{**e, "tier": "high" if e["amount"] >= 100 else "standard"} for e in active]
    assert read_jsonl(tmp_path / "examples" / "out" / "active_events.jsonl") == expected
    assert {e["tier"] for e in expected} == {"high", "standard"}
    rows = summary_rows(done.stderr)
    assert "active-events: completed" in done.stderr
    total, kept = f"{len(events):,}", f"{len(active):,}"
    assert rows["events"][1:5] == ["source", "file", "", total]
    assert rows["active-only"][1:7] == ["processor", "filter", total, kept,
                                        f"{len(events) - len(active):,}", "0"]
    assert rows["tag-high-value"][1:5] == ["processor", "map", kept, kept]
    assert rows["active-events"][1:5] == ["sink", "file", kept, kept]


def test_failed_batch_leaves_no_trace_in_checkpointed_aggregate_state(tmp_path: Path) -> None:
    """A batch that fails after an aggregate ran on it is undone in the checkpointed state:
    once the bad record is fixed, the rerun counts that batch once, not twice."""
    documents = [{"id": i, "amount": i} for i in range(10)]
    write_jsonl(tmp_path / "records.jsonl", documents)
    file = write_pipeline(
        tmp_path,
        sources=[connector("in", "file", path="records.jsonl")],
        processors=[processor("sum", "aggregate", EXAMPLES / "sum_aggregate.py")],
        sinks=[connector("out", "file", path="out.jsonl", format="lines")],
        batch={"size": 3, "linger_ms": 0},
    )
    # The guard sees running totals (0, 1, 3 | 6, 10, 15 | ...): failing on 10 fails
    # the second batch after the aggregate already folded all of it.
    guard = tmp_path / "fail_on_total.py"
    guard.write_text(
        '"""Fail on the running total given as param ``bad``."""\n'
        "import dataflare\n\n\n"
        '@dataflare.map(params={"bad": None})\n'
        "def fail_on_total(record: dataflare.Record, params: dict[str, str]) -> dataflare.Record:\n"
        '    if record.value == params["bad"].encode():\n'
        '        raise ValueError(f"total {record.value!r} refused")\n'
        "    return record\n"
    )
    document = yaml.safe_load(file.read_text())
    document["processors"].append(processor("guard", "map", guard, {"bad": "10"}))
    file.write_text(yaml.safe_dump(document, sort_keys=False))

    failed = run(file)
    assert failed.status == "failed"
    assert [int(v) for v in (tmp_path / "out.jsonl").read_text().split()] == [0, 1, 3]
    checkpoint = json.loads((tmp_path / ".dataflare" / "test.checkpoint.json").read_text())
    assert checkpoint["accumulators"]["sum"] == "3"  # not 15: the failed batch is undone

    document["processors"][1] = processor("guard", "map", guard, {"bad": "-1"})
    file.write_text(yaml.safe_dump(document, sort_keys=False))
    assert run(file).status == "completed"
    totals = [int(v) for v in (tmp_path / "out.jsonl").read_text().split()]
    assert totals == [0, 1, 3, 6, 10, 15, 21, 28, 36, 45]
