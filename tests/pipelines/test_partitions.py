"""Workers that read a partitioned source themselves: a glob's files, one per partition.

The driver only assigns files and keeps the checkpoint; each worker reads its file,
runs the chain and writes the file's own output (``out/{partition}``). Every expected
output is computed here from the input the test wrote: each partition's output must
equal what a run over that file alone writes.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.paths import EXAMPLES
from test_workers import (
    FILTER_MAP,
    document,
    filter_map_held,
    proc,
    run,
    sigkill_workers,
    workers_of,
)

from dataflare_host.connectors import FileSink, FileSource
from dataflare_host.pipeline._runner import Pipeline, task_pipeline

SIZES = (7_000, 3_000, 5_000, 1_000)
"""Records per file: unequal, so a worker that finishes early takes the next file."""


def write_parts(directory: Path, sizes: tuple[int, ...] = SIZES) -> dict[str, list[int]]:
    """``in/part-N.jsonl`` files of ``sizes`` records; each file's document ids."""
    (directory / "in").mkdir(parents=True)
    ids: dict[str, list[int]] = {}
    first = 0
    for part, size in enumerate(sizes):
        name = f"part-{part}.jsonl"
        ids[name] = list(range(first, first + size))
        lines = (json.dumps(document(i), separators=(",", ":")) for i in ids[name])
        (directory / "in" / name).write_text("\n".join(lines) + "\n")
        first += size
    return ids


def partitioned(
    directory: Path,
    processors: list[dict[str, Any]],
    *,
    source: str = "in/part-*.jsonl",
    sink: str = "out/{partition}",
    **top: Any,
) -> Path:
    doc = {
        "name": "parts",
        "batch": {"size": 250, "linger_ms": 5},
        "sources": [{"id": "in", "type": "plugin",
                     "config": {"plugin_type": "file", "connection": {"path": source}}}],
        "processors": processors,
        "sinks": [{"id": "out", "type": "plugin",
                   "config": {"plugin_type": "file", "connection": {"path": sink}}}],
        **top,
    }
    file = directory / "pipeline.yaml"
    file.write_text(yaml.safe_dump(doc, sort_keys=False))
    return file


def expected(ids: list[int]) -> list[dict[str, Any]]:
    return [{**document(i), "tag": "t"} for i in ids if i % 2 == 0]


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def checkpoint(directory: Path) -> Any:
    return json.loads((directory / ".dataflare" / "parts.checkpoint.json").read_text())


@pytest.mark.parametrize("workers", ["1", "2"])
def test_each_file_read_in_the_workers_writes_what_a_run_over_it_alone_writes(
    tmp_path: Path, workers: str
) -> None:
    ids = write_parts(tmp_path / "glob")
    summary, _ = run(partitioned(tmp_path / "glob", FILTER_MAP, workers=workers))
    assert summary.status == "completed", summary.error
    kind = "local" if workers == "2" else "thread"
    assert summary.engine.startswith(f"{workers} {kind} worker(s) reading partitions of 'in'")
    for name, file_ids in ids.items():
        alone = tmp_path / f"alone-{name}"
        alone.mkdir()
        (alone / name).write_bytes((tmp_path / "glob" / "in" / name).read_bytes())
        one, _ = run(partitioned(alone, FILTER_MAP, source=name, sink="out.jsonl"))
        assert one.status == "completed", one.error
        written = (tmp_path / "glob" / "out" / name).read_bytes()
        assert written == (alone / "out.jsonl").read_bytes()
        assert lines_of(tmp_path / "glob" / "out" / name) == expected(file_ids)
    counts = {s.stage: (s.records_in, s.records_out) for s in summary.stats}
    assert counts["in"][1] == sum(SIZES)
    assert counts["out"] == (sum(SIZES) // 2, sum(SIZES) // 2)
    readers = [s for s in summary.stats if s.role == "worker"]
    assert len(readers) == int(workers)
    assert sum(w.records_in for w in readers) == sum(SIZES)
    if workers == "2":
        assert all(w.records_in > 0 for w in readers), "both workers read files"
    saved = checkpoint(tmp_path / "glob")["positions"]["in"]
    assert sorted(saved["ended"]) == sorted(ids)


def test_the_driver_spends_almost_none_of_the_runs_cpu(tmp_path: Path) -> None:
    """The driver's own CPU time against its workers' (children joined by the end of the
    run): at most 3%. Measured in CPU seconds, not wall-clock, so a loaded machine
    slows both sides alike."""
    write_parts(tmp_path, (60_000,) * 4)
    pipeline = Pipeline.from_file(partitioned(tmp_path, FILTER_MAP, workers="2"))
    try:
        own, children = resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN
        before = [resource.getrusage(who) for who in (own, children)]
        summary = pipeline.run(None, handle_signals=False)
        pipeline.close()  # the workers are joined: their CPU time is the children's
        after = [resource.getrusage(who) for who in (own, children)]
    finally:
        pipeline.close()
    assert summary.status == "completed", summary.error
    driver, workers = (
        (a.ru_utime + a.ru_stime) - (b.ru_utime + b.ru_stime)
        for a, b in zip(after, before, strict=True)
    )
    assert workers > 1.0, f"the workers used {workers:.2f} s: they did not do the reading"
    share = driver / (driver + workers)
    assert share <= 0.03, f"the driver used {driver:.3f} s of {driver + workers:.3f} s"


CRASHING = """
import os
import signal

import dataflare


@dataflare.filter(params={"at": "-1"})
def crash_at(record: dataflare.Record, params: dict[str, str]) -> bool:
    if record.json()["id"] == int(params["at"]):
        os.kill(os.getpid(), signal.SIGKILL)  # the worker dies here, every time
    return True
"""


def test_a_worker_that_dies_at_the_same_record_again_and_again_fails_the_run(
    tmp_path: Path,
) -> None:
    """A crash loop (a plugin that kills its process at one record of one file): the
    worker is replaced three times, each resuming the file where the last left it, and
    the fourth death in a row with no position reported between fails the run in one line
    naming the worker, the file and the source; the other files are written whole."""
    ids = write_parts(tmp_path, (500, 500, 500, 500))
    (tmp_path / "crash.py").write_text(CRASHING)
    at = str(ids["part-2.jsonl"][7])
    crash = proc("crash", "filter", tmp_path / "crash.py", params={"at": at})
    summary, _ = run(partitioned(tmp_path, [crash, *FILTER_MAP], workers="2"))
    assert summary.status == "failed"
    assert summary.error is not None
    assert re.fullmatch(
        r"worker-\d died 4 times in a row \(the last killed by SIGKILL\) reading "
        r"partition\(s\) part-2\.jsonl of source 'in', each time from the start of "
        r"part-2\.jsonl: a record there, or a plugin as it starts, ends the process; the "
        r"checkpoint holds where each resumes",
        summary.error,
    ), summary.error
    assert sum(w.restarts for w in summary.stats if w.role == "worker") == 3
    for name in ("part-0.jsonl", "part-1.jsonl"):
        assert lines_of(tmp_path / "out" / name) == expected(ids[name])
    # The failure kept the positions reported before it: a file written whole is ended in
    # the checkpoint, and a rerun (the plugin fixed) writes every file once.
    saved = checkpoint(tmp_path)["positions"]["in"]
    whole = {
        name
        for name in ids
        if (tmp_path / "out" / name).exists()
        and lines_of(tmp_path / "out" / name) == expected(ids[name])
    }
    assert {"part-0.jsonl", "part-1.jsonl"} <= whole
    assert whole - {"part-2.jsonl"} <= set(saved["ended"]), saved
    fixed = proc("crash", "filter", tmp_path / "crash.py", params={"at": "-1"})
    again, _ = run(partitioned(tmp_path, [fixed, *FILTER_MAP], workers="2"))
    assert again.status == "completed", again.error
    for name, file_ids in ids.items():
        assert lines_of(tmp_path / "out" / name) == expected(file_ids), name


def test_sigkills_of_workers_move_their_files_to_new_workers_and_lose_nothing(
    tmp_path: Path,
) -> None:
    """Ten SIGKILLs of workers mid-run: each killed worker's file resumes, in a new worker,
    from the position it last reported; every file's output then holds every expected
    record (at least once: records after that position are written again), in order."""
    ids = write_parts(tmp_path, (6_000,) * 4)
    held = tmp_path / "held"
    held.touch()
    kills: list[int] = []
    killer = sigkill_workers(kills, within_s=90, every_s=0.15, held=held)
    file = partitioned(tmp_path, filter_map_held(held), workers="2",
                       checkpoint={"interval_ms": 200})
    summary, _ = run(file, killer)
    assert summary.status == "completed", summary.error
    assert len(kills) == 10
    restarts = sum(w.restarts for w in summary.stats if w.role == "worker")
    assert restarts == 10
    for name, file_ids in ids.items():
        written = lines_of(tmp_path / "out" / name)
        want = expected(file_ids)
        assert {d["id"] for d in written} == {d["id"] for d in want}, name  # none missing
        # Written again from the last reported position on: each record's first
        # appearance is in the file's order.
        assert list(dict.fromkeys(d["id"] for d in written)) == [d["id"] for d in want]


def test_a_stopped_run_resumes_each_file_where_it_stopped(tmp_path: Path) -> None:
    ids = write_parts(tmp_path)
    held = tmp_path / "held"
    held.touch()
    file = partitioned(tmp_path, filter_map_held(held), workers="2",
                       checkpoint={"interval_ms": 100})

    def stop_once_written(pipeline: Pipeline) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if sum(s.records_in for s in pipeline.stats if s.role == "sink") >= 500:
                break
            time.sleep(0.02)
        pipeline.stop()
        held.unlink()

    first, _ = run(file, stop_once_written)
    assert first.status == "stopped", first.error
    saved = checkpoint(tmp_path)["positions"]["in"]
    assert len(saved["ended"]) < len(ids), "the stop came before every file ended"
    second, _ = run(file)
    assert second.status == "completed", second.error
    assert second.resumed
    for name, file_ids in ids.items():
        # A stop commits what it wrote: nothing is written twice.
        assert lines_of(tmp_path / "out" / name) == expected(file_ids), name


def test_a_line_that_is_not_json_fails_the_run_naming_its_file_and_line(tmp_path: Path) -> None:
    write_parts(tmp_path)
    bad = tmp_path / "in" / "part-2.jsonl"
    lines = bad.read_text().splitlines()
    lines[1_233] = lines[1_233][:-1]
    bad.write_text("\n".join(lines) + "\n")
    summary, _ = run(partitioned(tmp_path, FILTER_MAP, workers="2"))
    assert summary.status == "failed"
    assert summary.error is not None
    assert "\n" not in summary.error
    assert summary.error.startswith(
        f"partition part-2.jsonl: source 'in' failed: {bad}:1234: not valid JSON ("
    )


def test_a_record_a_plugin_chokes_on_goes_where_on_error_sends_it(tmp_path: Path) -> None:
    ids = write_parts(tmp_path)
    choking = tmp_path / "choke.py"
    choking.write_text(
        "import dataflare\n\n\n@dataflare.filter\ndef choke(record):\n"
        "    if record.json()['id'] == 9_000:\n        raise ValueError('nine thousand')\n"
        "    return True\n"
    )
    for on_error, status in (("fail", "failed"), ("skip", "completed")):
        directory = tmp_path / on_error
        directory.mkdir()
        (directory / "in").symlink_to(tmp_path / "in")
        processors = [proc("choke", "filter", choking, on_error=on_error), *FILTER_MAP]
        summary, _ = run(partitioned(directory, processors, workers="2"))
        assert summary.status == status, summary.error
        if on_error == "fail":
            assert summary.error is not None
            # The file, the plugin's line, the record's offset in its file and its value.
            assert summary.error.startswith(
                "partition part-1.jsonl: processor 'choke' failed: plugin 'choke' (filter) "
                "failed at record offset 2000 (choke.py:7): ValueError: nine thousand"
            )
            assert '{"id":9000,' in summary.error
        else:
            skipped = [i for i in ids["part-1.jsonl"] if i != 9_000]
            assert lines_of(directory / "out" / "part-1.jsonl") == expected(skipped)


def test_a_checkpoint_taken_in_the_workers_resumes_in_one_process_when_it_can(
    tmp_path: Path,
) -> None:
    """Every file read to its end in the workers: a run reading in the driver (one output
    file) reads nothing again. One file partly read while a later one was read: one line
    saying so, and --reset."""
    write_parts(tmp_path)
    summary, _ = run(partitioned(tmp_path, FILTER_MAP, workers="2"))
    assert summary.status == "completed", summary.error
    single = partitioned(tmp_path, FILTER_MAP, sink="one.jsonl", workers="2")
    again, _ = run(single)
    assert again.status == "completed", again.error
    assert (tmp_path / "one.jsonl").read_text() == ""
    saved = json.loads((tmp_path / ".dataflare" / "parts.checkpoint.json").read_text())
    at = saved["positions"]["in"]
    at["ended"] = ["part-3.jsonl"]  # part-0 to 2 only partly read, part-3 done
    (tmp_path / ".dataflare" / "parts.checkpoint.json").write_text(json.dumps(saved))
    failed, _ = run(single)
    assert failed.status == "failed"
    assert failed.error is not None
    assert "read in parallel by workers" in failed.error
    assert "--reset" in failed.error


def test_a_partition_sink_with_a_chain_that_keeps_state_is_one_line(tmp_path: Path) -> None:
    """Refused when the pipeline is loaded, ``validate`` too (exit 2, as every
    configuration error), naming the sink's path in the file; nothing is read."""
    from click.testing import CliRunner

    from dataflare import ConfigurationError
    from dataflare_host.cli._main import main

    write_parts(tmp_path)
    summing = [proc("sum", "aggregate", EXAMPLES / "sum_aggregate.py")]
    file = partitioned(tmp_path, summing, workers="2")
    with pytest.raises(ConfigurationError) as caught:
        Pipeline.from_file(file)
    message = str(caught.value)
    assert "\n" not in message
    assert re.match(rf"{re.escape(str(file))}:\d+: sinks\[0\]\.config\.connection\.path: ", message)
    assert "sink 'out' writes a file per partition ({partition} in its path)" in message
    assert "processor 'sum' keeps state" in message
    for command in ("validate", "run"):
        result = CliRunner().invoke(main, [command, str(file)])
        assert result.exit_code == 2, result.stderr
        assert result.stderr.strip() == f"error: {message}"
    assert not (tmp_path / "out").exists()
    # A dead letter that takes one writer beside a {partition} sink: the same refusal.
    doc = yaml.safe_load(partitioned(tmp_path, FILTER_MAP, workers="2").read_text())
    doc["dead_letter"] = {"id": "rejects", "type": "plugin", "config": {
        "plugin_type": "file", "connection": {"path": "rejects.jsonl"}}}
    file.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(ConfigurationError, match="sink 'rejects' takes one writer"):
        Pipeline.from_file(file)


def test_reading_in_the_driver_when_a_sink_takes_one_writer(tmp_path: Path) -> None:
    """A single output file: the driver reads, the workers share the chain (as before)."""
    ids = write_parts(tmp_path)
    summary, pipeline = run(partitioned(tmp_path, FILTER_MAP, sink="one.jsonl", workers="2"))
    assert summary.status == "completed", summary.error
    assert summary.engine.startswith("engine local, 2 workers")
    everything = [i for part in ids.values() for i in part]
    assert lines_of(tmp_path / "one.jsonl") == expected(everything)
    assert len(workers_of(pipeline)) == 2


def test_what_workers_log_is_logged_by_the_driver_as_json(tmp_path: Path) -> None:
    """A record skipped in a worker process: its warning reaches stderr through the
    driver's handler, so with ``--log-format json`` every line is a JSON object."""
    write_parts(tmp_path)
    choking = tmp_path / "choke.py"
    choking.write_text(
        "import dataflare\n\n\n@dataflare.filter\ndef choke(record):\n"
        "    if record.json()['id'] == 9_000:\n        raise ValueError('nine thousand')\n"
        "    return True\n"
    )
    processors = [proc("choke", "filter", choking, on_error="skip"), *FILTER_MAP]
    file = partitioned(tmp_path, processors, workers="2")
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dataflare"), "--log-format", "json", "run",
         "--quiet", str(file)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]  # each one JSON
    skipped = [line for line in lines if "skipped a record" in line.get("message", "")]
    assert len(skipped) == 1, lines
    assert skipped[0]["level"] == "WARNING"
    assert skipped[0]["logger"] == "dataflare.pipeline"
    assert "nine thousand" in skipped[0]["message"]


def test_a_task_runs_its_partitions_in_its_own_process_whatever_the_engine(
    tmp_path: Path,
) -> None:
    """What a worker (or a Ray actor) runs for its partitions is a one-process pipeline:
    never workers or Ray actors of its own."""
    ids = write_parts(tmp_path)
    file = partitioned(tmp_path, [{**FILTER_MAP[0], "config": {**FILTER_MAP[0]["config"],
                                                              "workers": "2"}}, FILTER_MAP[1]],
                       workers="2", engine="ray")
    pipeline = task_pipeline(str(file))
    try:
        assert pipeline.runs_a_task
        source = pipeline.sources[0]
        assert isinstance(source, FileSource)
        source.restrict(["part-1.jsonl"])
        sink = pipeline.sinks[0]
        assert isinstance(sink, FileSink)
        sink.for_partition("part-1.jsonl")
        summary = pipeline.run(None, handle_signals=False)
    finally:
        pipeline.close()
    assert summary.status == "completed", summary.error
    assert summary.engine.startswith("engine in-process, 1 worker"), summary.engine
    assert lines_of(tmp_path / "out" / "part-1.jsonl") == expected(ids["part-1.jsonl"])


def test_a_rerun_reads_what_was_appended_to_files_that_ended(tmp_path: Path) -> None:
    """Every file read to its end, then two of them grow: the next run writes only the new
    lines, as a run reading in one process would."""
    ids = write_parts(tmp_path)
    file = partitioned(tmp_path, FILTER_MAP, workers="2")
    first, _ = run(file)
    assert first.status == "completed", first.error
    grown = {"part-1.jsonl": range(50_000, 50_010), "part-3.jsonl": range(60_000, 60_004)}
    for name, more in grown.items():
        with (tmp_path / "in" / name).open("a") as handle:
            handle.writelines(json.dumps(document(i), separators=(",", ":")) + "\n" for i in more)
    second, _ = run(file)
    assert second.status == "completed", second.error
    assert second.resumed
    for name, file_ids in ids.items():
        assert lines_of(tmp_path / "out" / name) == expected([*file_ids, *grown.get(name, [])])
    counts = {s.stage: s.records_out for s in second.stats}
    assert counts["in"] == 14  # only the new lines were read


def test_the_sources_backlog_is_what_the_workers_have_left_to_read(tmp_path: Path) -> None:
    """The driver reads nothing, yet the source's counter shows what is left to read (the
    progress line, the metrics): the running tasks' backlogs summed, none at the end.
    Files of several megabytes: a file source reads ahead a megabyte at a time."""
    write_parts(tmp_path, (60_000,) * 4)
    held = tmp_path / "held"
    held.touch()
    file = partitioned(tmp_path, filter_map_held(held), workers="2",
                       checkpoint={"interval_ms": 100})
    seen: list[int] = []

    def watch(pipeline: Pipeline) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(seen) < 3:
            backlog = pipeline.stats[0].backlog
            if backlog is not None and backlog.amount > 0:
                assert backlog.unit == "bytes"
                seen.append(backlog.amount)
            time.sleep(0.05)
        held.unlink()

    summary, _ = run(file, watch)
    assert summary.status == "completed", summary.error
    assert len(seen) == 3, "no backlog was shown while the workers read"
    total = sum(path.stat().st_size for path in (tmp_path / "in").iterdir())
    assert all(0 < amount <= total for amount in seen)
    end = summary.stats[0].backlog
    assert end is not None
    assert end.amount == 0


def test_sigterm_stops_the_workers_reading_and_a_rerun_completes_every_file_once(
    tmp_path: Path, dataflare_exe: Path
) -> None:
    """``dataflare run`` SIGTERMed while its workers read: each worker commits its batch in
    flight, the run says it stopped, no worker outlives it, and the next run writes the
    rest of every file, no record twice (a stop commits what it wrote)."""
    from test_workers import _alive, _workers

    ids = write_parts(tmp_path, (20_000,) * 4)
    held = tmp_path / "held"
    held.touch()
    file = partitioned(tmp_path, filter_map_held(held), workers="2")
    run_ = subprocess.Popen([str(dataflare_exe), "run", "--quiet", str(file)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        children: list[int] = []
        written = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (len(children) >= 2 and written > 0):
            children = _workers(run_.pid) or children
            out = tmp_path / "out"
            written = sum(p.stat().st_size for p in out.iterdir()) if out.exists() else 0
            time.sleep(0.05)
        assert written > 0, "the workers wrote nothing within 60 s"
        run_.send_signal(signal.SIGTERM)
        _, stderr = run_.communicate(timeout=30)
    finally:
        if run_.poll() is None:
            run_.kill()
            run_.communicate(timeout=10)
    assert run_.returncode == 0, stderr
    assert "received SIGTERM: stopping" in stderr
    assert "Traceback" not in stderr
    assert not [pid for pid in children if _alive(pid)], "workers outlived the pipeline"
    saved = checkpoint(tmp_path)["positions"]["in"]
    assert len(saved["ended"]) < len(ids), "the stop came before every file ended"
    held.unlink()
    second, _ = run(file)
    assert second.status == "completed", second.error
    for name, file_ids in ids.items():
        assert lines_of(tmp_path / "out" / name) == expected(file_ids), name


def _children(pid: int) -> list[tuple[int, str]]:
    """The live children of ``pid``: (pid, whole command line) each."""
    found = subprocess.run(["ps", "-ww", "-o", "pid=,stat=,args=", "--ppid", str(pid)],
                           capture_output=True, text=True, check=False)
    rows = [line.split(maxsplit=2) for line in found.stdout.splitlines()]
    return [(int(row[0]), row[2]) for row in rows if len(row) == 3 and "Z" not in row[1]]


def test_a_driver_whose_workers_read_keeps_no_sandbox_process(
    tmp_path: Path, dataflare_exe: Path
) -> None:
    """With a WASM processor and the workers reading, the driver closes its own copy of
    the plugins once it knows (each worker loads its own), so no sandbox process of its
    sits idle through the run. Without a sandbox server, a sandbox process is a child of
    the process that uses it: the workers have one each, the driver none."""
    ids = write_parts(tmp_path, (40_000,) * 4)
    wasm_filter = {**FILTER_MAP[0], "config": {**FILTER_MAP[0]["config"], "plugin_source": "wasm"}}
    file = partitioned(tmp_path, [wasm_filter, FILTER_MAP[1]], workers="2")
    run_ = subprocess.Popen([str(dataflare_exe), "run", "--quiet", str(file)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "DATAFLARE_SANDBOX_SERVER_IDLE_S": "0"})
    sandbox = "dataflare_host.wasm.sandbox.child"
    kept: list[int] | None = None
    while run_.poll() is None and kept is None:
        children = _children(run_.pid)
        workers = [p for p, line in children if "spawn_main" in line]
        if len(workers) == 2 and all(
            any(sandbox in line for _, line in _children(w)) for w in workers
        ):
            kept = [p for p, line in children if sandbox in line]
        time.sleep(0.02)
    _, stderr = run_.communicate(timeout=300)
    assert run_.returncode == 0, stderr
    assert kept is not None, "the run ended before both workers had their sandbox process"
    assert kept == [], "the driver kept a sandbox process while its workers read"
    for name, file_ids in ids.items():
        assert lines_of(tmp_path / "out" / name) == expected(file_ids)


def test_reset_refuses_to_append_a_second_copy_to_the_partitions_files(tmp_path: Path) -> None:
    """``--reset`` with ``out/{partition}`` in append mode: the files a first run wrote
    would each get every record again, so it refuses in one line and changes nothing;
    with ``mode: overwrite`` each file is emptied first and holds one copy."""
    from click.testing import CliRunner

    from dataflare_host.cli._main import main

    ids = write_parts(tmp_path, (300, 200))
    file = partitioned(tmp_path, FILTER_MAP, workers="2")
    assert CliRunner().invoke(main, ["run", "--quiet", str(file)]).exit_code == 0
    before = {name: (tmp_path / "out" / name).read_bytes() for name in ids}
    result = CliRunner().invoke(main, ["run", "--quiet", "--reset", str(file)])
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert "out/{partition}: 2 partition files" in line
    assert "would get a second copy of every record appended" in line
    assert {name: (tmp_path / "out" / name).read_bytes() for name in ids} == before
    doc = yaml.safe_load(file.read_text())
    doc["sinks"][0]["config"]["connection"]["mode"] = "overwrite"
    file.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = CliRunner().invoke(main, ["run", "--quiet", "--reset", str(file)])
    assert result.exit_code == 0, result.stderr
    for name, file_ids in ids.items():
        assert lines_of(tmp_path / "out" / name) == expected(file_ids)


def test_a_file_removed_before_its_worker_reads_it_fails_the_run_naming_it(
    tmp_path: Path,
) -> None:
    """The driver listed four files; the last is removed while the first two are read. Its
    worker fails in one line naming the file, as reading in one process does when it comes
    to open it, instead of reading nothing and calling the run complete."""
    write_parts(tmp_path, (400, 400, 400, 400))
    held = tmp_path / "held"
    held.touch()
    file = partitioned(tmp_path, filter_map_held(held), workers="2")

    def remove_the_last(pipeline: Pipeline) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
            s.records_in for s in pipeline.stats if s.role == "worker"
        ):
            time.sleep(0.02)
        (tmp_path / "in" / "part-3.jsonl").unlink()
        held.unlink()

    summary, _ = run(file, remove_the_last)
    assert summary.status == "failed"
    assert summary.error == (
        f"partition part-3.jsonl: source 'in': file source: cannot open "
        f"{tmp_path}/in/part-3.jsonl: No such file or directory"
    ), summary.error
    assert "part-3.jsonl" not in checkpoint(tmp_path)["positions"]["in"]["ended"]


def test_files_no_worker_reads_yet_count_in_the_sources_backlog(tmp_path: Path) -> None:
    """Small files (each read ahead whole, so a running task reports nothing left): the
    backlog still counts the files waiting for a worker, whole, until one takes them;
    at the end nothing is left."""
    write_parts(tmp_path, (2_000,) * 4)
    held = tmp_path / "held"
    held.touch()
    file = partitioned(tmp_path, filter_map_held(held), workers="2",
                       checkpoint={"interval_ms": 100})
    waiting = sum((tmp_path / "in" / f"part-{n}.jsonl").stat().st_size for n in (2, 3))
    seen: list[int] = []

    def watch(pipeline: Pipeline) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(seen) < 5:
            backlog = pipeline.stats[0].backlog
            if backlog is not None and any(
                s.records_in for s in pipeline.stats if s.role == "worker"
            ):
                seen.append(backlog.amount)
            time.sleep(0.05)
        held.unlink()

    summary, _ = run(file, watch)
    assert summary.status == "completed", summary.error
    assert len(seen) == 5
    assert all(amount >= waiting for amount in seen), (seen, waiting)
    end = summary.stats[0].backlog
    assert end is not None
    assert end.amount == 0


def test_the_summary_counts_the_workers_started_not_the_workers_asked_for(
    tmp_path: Path,
) -> None:
    """``workers: 6`` over two files starts two workers (a file is one worker's at a
    time), and the summary says two, with where each ran; one worker of the driver's
    own says it runs in the driver."""
    write_parts(tmp_path, (50, 50))
    summary, _ = run(partitioned(tmp_path, FILTER_MAP, workers="6"))
    assert summary.status == "completed", summary.error
    assert re.fullmatch(
        r"2 local worker\(s\) reading partitions of 'in' \(pid \d+; pid \d+\)", summary.engine
    ), summary.engine
    (tmp_path / "out").rename(tmp_path / "out-6")
    (tmp_path / ".dataflare").rename(tmp_path / "checkpoint-6")
    summary, _ = run(partitioned(tmp_path, FILTER_MAP, workers="1"))
    assert summary.engine == "1 thread worker(s) reading partitions of 'in' (in the driver)"
    assert [s.kind for s in summary.stats if s.role == "worker"] == ["thread in the driver"]
