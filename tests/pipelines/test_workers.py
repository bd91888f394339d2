"""``workers: N``: the processor chain in N local worker processes.

Every expected output is computed here from the input the test wrote. Workers
are real spawned processes; the kill tests SIGKILL them by the pid the
pipeline's worker counters show.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from support.paths import EXAMPLES
from support.record_files import read_records

from dataflare_host.pipeline._runner import Pipeline, RunSummary
from dataflare_host.pipeline._stats import StageStats

if TYPE_CHECKING:
    from support.servers import PostgresServer

PLUGINS = Path(__file__).parent.parent / "pipeline_fixtures" / "plugins"
USERS = 13


def document(i: int) -> dict[str, Any]:
    return {"id": i, "status": ("active", "paused")[i % 2], "user": f"u{i % USERS}",
            "amount": i % 7}


def write_input(directory: Path, count: int) -> Path:
    path = directory / "in.jsonl"
    with path.open("w") as handle:
        for i in range(count):
            handle.write(json.dumps(document(i), separators=(",", ":")) + "\n")
    return path


def pipeline_file(directory: Path, processors: list[dict[str, Any]], *, key: bool = False,
                  batch: int = 200, **top: Any) -> Path:
    source: dict[str, Any] = {"path": "in.jsonl"}
    if key:
        source["key_field"] = "user"
    doc = {
        "name": "workers",
        "batch": {"size": batch, "linger_ms": 5},
        "sources": [{"id": "in", "type": "plugin",
                     "config": {"plugin_type": "file", "connection": source}}],
        "processors": processors,
        "sinks": [{"id": "out", "type": "plugin",
                   "config": {"plugin_type": "file", "connection": {"path": "out.jsonl"}}}],
        **top,
    }
    file = directory / "pipeline.yaml"
    file.write_text(yaml.safe_dump(doc, sort_keys=False))
    return file


def add_upsert_sink(file: Path, server: PostgresServer) -> str:
    """Add a PostgreSQL sink upserting on ``id`` into a new table ``tagged`` beside the
    file sink of :func:`pipeline_file`; the table's database."""
    dsn = server.create_database("workers")
    server.execute(dsn, "CREATE TABLE tagged (id int PRIMARY KEY, status text, tag text)")
    doc = yaml.safe_load(file.read_text())
    doc["sinks"].append({"id": "table", "type": "plugin", "config": {
        "plugin_type": "postgres",
        "connection": {"dsn": dsn, "table": "tagged", "key_columns": ["id"]}}})
    file.write_text(yaml.safe_dump(doc, sort_keys=False))
    return dsn


def assert_upserted(server: PostgresServer, dsn: str, count: int) -> None:
    """The ``tagged`` table holds exactly the filter-map outputs of ``count`` records."""
    found = server.execute(dsn, "SELECT id, status, tag FROM tagged")
    table = {(int(i), str(s), str(t)) for i, s, t in found}  # type: ignore[call-overload]
    assert table == {(d["id"], d["status"], d["tag"]) for d in expected_filter_map(count)}


def run_killing_ten(file: Path, *, within_s: float, every_s: float, held: Path) -> RunSummary:
    """Run ``file`` (its processors from :func:`filter_map_held` with ``held``) while
    :func:`sigkill_workers` kills ten workers; the summary of a run that completed after
    all ten kills.

    The run is held slow until the tenth kill (an event, not a guess at how long the
    input lasts on a loaded machine), then goes on at full speed.
    """
    kills: list[int] = []
    held.touch()
    killer = sigkill_workers(kills, within_s=within_s, every_s=every_s, held=held)
    summary, _ = run(file, killer)
    assert summary.status == "completed", summary.error
    assert len(kills) == 10, f"{len(kills)} kills in {within_s} s"
    return summary


def proc(id: str, kind: str, path: Path, **config: Any) -> dict[str, Any]:
    return {"id": id, "type": "plugin",
            "config": {"plugin_type": kind, "plugin_path": str(path), **config}}


FILTER_MAP = [
    proc("even", "filter", PLUGINS / "keep_even.py"),
    proc("tag", "map", PLUGINS / "tag.py", params={"tag": "t"}),
]


def filter_map_held(held: Path) -> list[dict[str, Any]]:
    """FILTER_MAP, its map slowed down while the file ``held`` exists (same output)."""
    slowed = {"tag": "t", "slow_while": str(held)}
    return [FILTER_MAP[0], proc("tag", "map", PLUGINS / "tag.py", params=slowed)]


def run(file: Path, during: Any = None) -> tuple[RunSummary, Pipeline]:
    pipeline = Pipeline.from_file(file)
    thread = threading.Thread(target=during, args=(pipeline,)) if during else None
    if thread:
        thread.start()
    try:
        return pipeline.run(None, handle_signals=False), pipeline
    finally:
        if thread:
            thread.join()
        pipeline.close()


def outputs(directory: Path) -> list[Any]:
    return [json.loads(line) for line in (directory / "out.jsonl").read_text().splitlines()]


def expected_filter_map(count: int) -> list[Any]:
    return [{**document(i), "tag": "t"} for i in range(count) if i % 2 == 0]


def workers_of(pipeline: Pipeline) -> list[StageStats]:
    return [s for s in pipeline.stats if s.role == "worker"]


def worker_pids(pipeline: Pipeline) -> list[int]:
    # The worker counters say where each worker runs: "local pid 1234[, N restart(s)]"
    # or "ray pid 1234 on node ab12cd34[, ...]".
    return [int(s.kind.split("pid ")[1].split(",")[0].split()[0]) for s in workers_of(pipeline)
            if "pid " in s.kind]


def sigkill_workers(
    kills: list[int], *, within_s: float, every_s: float, count: int = 10,
    held: Path | None = None,
) -> Callable[[Pipeline], None]:
    """A ``run(..., during)`` hook: SIGKILL ``count`` workers in turn, noted in ``kills``.

    Between two kills the sinks must receive more records: each kill lands mid-run on
    a pipeline that is making progress. Without that wait a loaded machine (a cold
    test run builds components meanwhile) restarts workers slower than ``every_s``,
    every restart is killed before its first batch, and the same batch dies four
    times: the pool's rule for a plugin that crashes its process, not a lost record.
    ``held``, when given, is removed once the killing is over: the run it held slow
    goes on at full speed.
    """

    def written(pipeline: Pipeline) -> int:
        return sum(s.records_in for s in pipeline.stats if s.role == "sink")

    def killer(pipeline: Pipeline) -> None:
        deadline = time.monotonic() + within_s
        progress = -1
        try:
            while len(kills) < count and time.monotonic() < deadline:
                pids = worker_pids(pipeline)
                if pids and written(pipeline) > progress:
                    pid = pids[len(kills) % len(pids)]
                    if pid not in kills:
                        try:
                            os.kill(pid, signal.SIGKILL)
                            kills.append(pid)
                            progress = written(pipeline)
                        except ProcessLookupError:
                            pass  # it died on its own a moment ago
                time.sleep(every_s)
        finally:
            if held is not None:
                held.unlink(missing_ok=True)

    return killer


def test_workers_2_writes_what_workers_1_writes_in_source_order(tmp_path: Path) -> None:
    count = 20_000
    one, two = tmp_path / "one", tmp_path / "two"
    for directory, workers in ((one, "1"), (two, "2")):
        directory.mkdir()
        write_input(directory, count)
        summary, _pipeline = run(pipeline_file(directory, FILTER_MAP, workers=workers))
        assert summary.status == "completed", summary.error
    assert outputs(one) == expected_filter_map(count)
    assert outputs(two) == outputs(one)
    assert summary.engine.startswith("engine local, 2 workers")
    workers = [s for s in summary.stats if s.role == "worker"]
    assert len(workers) == 2
    assert sum(w.records_in for w in workers) == count  # each batch once, through the chain
    assert sum(w.records_out for w in workers) == count // 2
    assert all(w.records_in > 0 for w in workers), "both workers got batches"


def checkpoint_positions(directory: Path) -> Any:
    return json.loads((directory / ".dataflare" / "workers.checkpoint.json").read_text())[
        "positions"
    ]


def test_a_line_that_is_not_json_fails_workers_2_as_it_fails_workers_1(tmp_path: Path) -> None:
    """Workers check the lines the driver left unmade: same error, output and checkpoint."""
    count, bad = 5_000, 3_001
    results = {}
    for workers in ("1", "2"):
        directory = tmp_path / workers
        directory.mkdir()
        path = write_input(directory, count)
        lines = path.read_text().splitlines()
        lines[bad - 1] = lines[bad - 1][:-1]  # the closing brace gone
        path.write_text("\n".join(lines) + "\n")
        summary, _ = run(pipeline_file(directory, FILTER_MAP, workers=workers))
        assert summary.status == "failed"
        assert summary.error is not None
        results[workers] = (
            summary.error.replace(str(directory), "<dir>"),
            (directory / "out.jsonl").read_bytes(),
            checkpoint_positions(directory)["in"]["line"],
        )
    error, written, line = results["1"]
    assert error.startswith(f"source 'in' failed: <dir>/in.jsonl:{bad}: not valid JSON (")
    assert written, "the batches before the bad one reached the sink"
    assert line < bad
    assert results["2"] == results["1"]


def test_every_sink_gets_from_workers_what_it_gets_from_workers_1(tmp_path: Path) -> None:
    """A lossless sink beside a JSONL one: values, metadata and offsets survive the wire,
    over several files with blank lines (records the driver made) between deferred ones."""
    written = {}
    for workers in ("1", "2"):
        directory = tmp_path / workers
        (directory / "in").mkdir(parents=True)
        for part in range(3):
            lines = [json.dumps(document(part * 1_000 + i), separators=(",", ":"))
                     for i in range(1_000)]
            lines[part * 100 + 50] = ""
            (directory / "in" / f"part-{part}.jsonl").write_text("\n".join(lines) + "\n")
        file = pipeline_file(directory, FILTER_MAP, workers=workers, batch=150)
        doc = yaml.safe_load(file.read_text())
        doc["sources"][0]["config"]["connection"] = {"path": "in", "format": "jsonl"}
        doc["sinks"].append({"id": "lossless", "type": "plugin", "config": {
            "plugin_type": "file", "connection": {"path": "out.records", "format": "records"}}})
        file.write_text(yaml.safe_dump(doc, sort_keys=False))
        summary, _ = run(file)
        assert summary.status == "completed", summary.error
        written[workers] = (
            (directory / "out.jsonl").read_bytes(),
            [(r.value, r.key, dict(r.metadata), r.offset)
             for r in read_records(directory / "out.records")],
        )
    jsonl, lossless = written["1"]
    assert len(lossless) == 1_500 - 3  # the even ids of 3,000, three of them blanked
    assert [r[0] for r in lossless] == jsonl.splitlines()
    assert lossless[0][2] == {"file": "part-0.jsonl", "line": "1"}
    assert written["2"] == written["1"]


def test_workers_auto_and_a_bad_value(tmp_path: Path) -> None:
    write_input(tmp_path, 10)
    from dataflare import PluginError

    with pytest.raises(PluginError, match=r"workers.*must be a number of workers or auto"):
        Pipeline.from_file(pipeline_file(tmp_path, FILTER_MAP, workers="many"))
    with pytest.raises(PluginError, match="from 1 to"):
        Pipeline.from_file(pipeline_file(tmp_path, FILTER_MAP, workers="0"))
    summary, _ = run(pipeline_file(tmp_path, FILTER_MAP, workers="auto"))
    cores = os.cpu_count() or 1
    assert summary.status == "completed", summary.error
    assert (f"{cores} workers" in summary.engine) or cores == 1


def running_sums(count: int) -> dict[str, list[int]]:
    """Per user, the running sum of amount after each of its records (the aggregate's outputs)."""
    sums: dict[str, list[int]] = {}
    for i in range(count):
        doc = document(i)
        previous = sums.setdefault(doc["user"], [])
        previous.append((previous[-1] if previous else 0) + doc["amount"])
    return sums


def keyed_outputs(directory: Path, count: int) -> dict[str, list[int]]:
    # The aggregate's outputs carry no user: their keys, in the sink's lossless format, do.
    per_key: dict[str, list[int]] = {}
    for record in read_records(directory / "out.records"):
        per_key.setdefault(record.key.decode(), []).append(json.loads(record.value))
    return per_key


def keyed_pipeline(directory: Path, workers: str) -> Path:
    file = pipeline_file(
        directory,
        [
            proc("even", "filter", PLUGINS / "keep_even.py"),
            proc("total", "aggregate", EXAMPLES / "sum_aggregate.py", partition_by="key"),
        ],
        key=True,
        workers=workers,
        batch=100,
    )
    doc = yaml.safe_load(file.read_text())
    doc["sinks"][0]["config"]["connection"] = {"path": "out.records", "format": "records"}
    file.write_text(yaml.safe_dump(doc, sort_keys=False))
    return file


def even_running_sums(count: int) -> dict[str, list[int]]:
    sums: dict[str, list[int]] = {}
    for i in range(0, count, 2):
        doc = document(i)
        previous = sums.setdefault(doc["user"], [])
        previous.append((previous[-1] if previous else 0) + doc["amount"])
    return sums


def test_keyed_aggregate_over_4_workers_equals_1_worker_per_key(tmp_path: Path) -> None:
    count = 6_000
    results = {}
    for workers in ("1", "4"):
        directory = tmp_path / workers
        directory.mkdir()
        write_input(directory, count)
        summary, _ = run(keyed_pipeline(directory, workers))
        assert summary.status == "completed", summary.error
        results[workers] = keyed_outputs(directory, count)
    assert results["1"] == even_running_sums(count)
    assert results["4"] == results["1"]


def test_keyed_aggregate_resumes_from_its_checkpoint_across_worker_counts(
    tmp_path: Path,
) -> None:
    count = 30_000
    write_input(tmp_path, count)
    file = keyed_pipeline(tmp_path, "4")

    def stop_midway(pipeline: Pipeline) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            sink = next(s for s in pipeline.stats if s.role == "sink")
            if sink.records_in >= count // 6:
                pipeline.stop()
                return
            time.sleep(0.002)

    first, _ = run(file, stop_midway)
    assert first.status == "stopped"
    partial = keyed_outputs(tmp_path, count)
    assert sum(map(len, partial.values())) < count // 2, "stopped before the end"
    # The rest with 2 workers: the per-key state is in the checkpoint, not in a worker.
    doc = yaml.safe_load(file.read_text())
    doc["workers"] = "2"
    file.write_text(yaml.safe_dump(doc, sort_keys=False))
    second, _ = run(file)
    assert second.status == "completed", second.error
    assert second.resumed
    assert keyed_outputs(tmp_path, count) == even_running_sums(count)


def test_sigkill_of_workers_mid_run_loses_nothing(tmp_path: Path) -> None:
    count = 300_000
    write_input(tmp_path, count)
    held = tmp_path / "held"
    file = pipeline_file(tmp_path, filter_map_held(held), workers="2", batch=500)
    summary = run_killing_ten(file, within_s=60, every_s=0.15, held=held)
    assert outputs(tmp_path) == expected_filter_map(count)
    restarts = summary.engine.split(", ")[-1]
    assert restarts.endswith("restart(s)")
    assert int(restarts.split()[0]) >= 10


SLEEPER = '''
import time
import dataflare

@dataflare.map
def slow(record: dataflare.Record) -> dataflare.Record:
    if record.json()["id"] == 50:
        time.sleep(30)
    return record
'''


def test_a_plugin_past_its_time_limit_in_a_worker_is_killed_within_a_second(
    tmp_path: Path,
) -> None:
    write_input(tmp_path, 200)
    (tmp_path / "slow.py").write_text(SLEEPER)
    file = pipeline_file(
        tmp_path, [proc("slow", "map", tmp_path / "slow.py", time_limit_s=1.0)], workers="2",
        batch=20,
    )
    died: dict[int, float] = {}

    def watch(pipeline: Pipeline) -> None:
        # Note when each first-generation worker process stops existing.
        deadline = time.monotonic() + 20
        pids: list[int] = []
        while not pids and time.monotonic() < deadline:
            pids = worker_pids(pipeline)
            time.sleep(0.005)
        while len(died) < 1 and time.monotonic() < deadline:
            for pid in pids:
                if pid not in died and not _alive(pid):
                    died[pid] = time.monotonic()
            time.sleep(0.005)

    summary, _ = run(file, watch)
    assert summary.status == "failed"
    assert "time limit (1 s)" in (summary.error or "")
    assert died, "no worker was killed"
    # From the moment the workers were up (the sleeping batch is among the first few).
    took = min(died.values()) - max(w.started for w in summary.stats if w.role == "worker")
    assert took < 1.0 + 1.0, took


GENERATOR_PIPELINE = {
    "name": "endless",
    "batch": {"size": 100, "linger_ms": 5},
    "sources": [{"id": "gen", "type": "plugin",
                 "config": {"plugin_type": "generator",
                            "connection": {"rate": 20000, "count": None}}}],  # endless
    "sinks": [{"id": "out", "type": "plugin",
               "config": {"plugin_type": "file", "connection": {"path": "out.jsonl"}}}],
}


def test_sigterm_stops_the_pipeline_and_every_worker_within_2_s(
    tmp_path: Path, dataflare_exe: Path
) -> None:
    doc = dict(GENERATOR_PIPELINE, processors=FILTER_MAP[1:])
    file = tmp_path / "pipeline.yaml"
    file.write_text(yaml.safe_dump(doc, sort_keys=False))
    run_ = subprocess.Popen([str(dataflare_exe), "run", "--quiet", "--workers", "2", str(file)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        children: list[int] = []
        while time.monotonic() < deadline and len(children) < 2:
            children = _workers(run_.pid)
            time.sleep(0.1)
        assert len(children) >= 2, "the workers did not start"
        time.sleep(1.0)
        run_.send_signal(signal.SIGTERM)
        started = time.monotonic()
        _, stderr = run_.communicate(timeout=10)
        took = time.monotonic() - started
    finally:
        if run_.poll() is None:  # the pipeline is endless: never leave it running
            run_.terminate()
            run_.communicate(timeout=10)
    assert took < 2.0, took
    assert run_.returncode == 0, stderr
    assert "engine local, 2 workers" in stderr
    assert not [pid for pid in children if _alive(pid)], "workers outlived the pipeline"


def _workers(pid: int) -> list[int]:
    """The worker processes of the driver ``pid``: its children that multiprocessing's
    spawn started, not its resource tracker (a helper that ends on its own once the
    driver is gone, a moment after it)."""
    # -ww: whole command lines (without a terminal ps cuts them at 80 columns).
    found = subprocess.run(["ps", "-ww", "-o", "pid=,args=", "--ppid", str(pid)],
                           capture_output=True, text=True, check=False)
    rows = [line.split(maxsplit=1) for line in found.stdout.splitlines()]
    return [int(row[0]) for row in rows if len(row) == 2 and "spawn_main" in row[1]]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) is not running.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_engine_ray_without_ray_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    write_input(tmp_path, 10)
    summary, _ = run(pipeline_file(tmp_path, FILTER_MAP, engine="ray"))
    assert summary.status == "failed"
    assert "pip install 'dataflare-plugins[ray]'" in (summary.error or "")


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_engine_ray_at_an_address_where_nothing_listens_fails_in_one_line(
    tmp_path: Path, scheme: str
) -> None:
    """Nothing listens at the address: one line saying so and what to do, at once (Ray
    itself retries for minutes, logging every try), for the chain's workers and for
    workers that read partitions alike."""
    pytest.importorskip("ray", reason="engine: ray needs the ray extra (scripts/setup)")
    import socket

    from test_partitions import partitioned, write_parts

    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"{scheme}127.0.0.1:{port}"
    write_input(tmp_path, 10)
    write_parts(tmp_path / "parts", (10, 10))
    for file in (
        pipeline_file(tmp_path, FILTER_MAP, workers="2", engine="ray", address=address),
        partitioned(tmp_path / "parts", FILTER_MAP, workers="2", engine="ray", address=address),
    ):
        summary, _ = run(file)
        assert summary.status == "failed"
        assert summary.error == (
            f"cannot join Ray at {address}: nothing answers there (Connection refused); "
            "start the cluster (ray start --head) or fix address: (--ray-address)"
        )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
