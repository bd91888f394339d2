"""What an operator meets on day one (issue 25, operator side): JSON logs throughout,
re-runs that say what they do, every validation problem at once, the cache's entries,
parameter hints a command really takes, the terminal's width, shell completion and
``dataflare graph``."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from dataflare_host.cli import main
from dataflare_host.pipeline._stats import StageStats

DATAFLARE = Path(sys.executable).parent / "dataflare"
PLUGINS = Path(__file__).parent.parent / "pipeline_fixtures" / "plugins"
GUEST_EXAMPLES = Path(__file__).parent.parent.parent / "guest_examples"


def entry(id: str, plugin_type: str, **config: Any) -> dict[str, Any]:
    return {"id": id, "type": "plugin", "config": {"plugin_type": plugin_type, **config}}


def write_pipeline(directory: Path, **document: Any) -> Path:
    path = directory / "pipeline.yaml"
    path.write_text(yaml.safe_dump({"name": "ops", **document}, sort_keys=False))
    return path


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def feed(directory: Path, count: int) -> None:
    (directory / "in.jsonl").write_text("".join(f'{{"id":{i}}}\n' for i in range(count)))


def copy_pipeline(directory: Path, mode: str | None = None) -> Path:
    """in.jsonl -> out.jsonl, nothing in between (``mode`` of the file sink)."""
    connection: dict[str, Any] = {"path": "out.jsonl"}
    if mode is not None:
        connection["mode"] = mode
    return write_pipeline(
        directory,
        sources=[entry("in", "file", connection={"path": "in.jsonl"})],
        sinks=[entry("out", "file", connection=connection)],
        batch={"size": 4, "linger_ms": 0},
    )


# -- 1. --log-format json: every line of stdout and stderr -------------------------------

PARSE = """
import dataflare


@dataflare.map
def parse(record):
    number = record.json()["id"]
    if number % 10 == 3:
        raise ValueError(f"cannot parse {number}")
    return record
"""

STRICT = """
import dataflare


@dataflare.map
def strict(record):
    if record.json()["id"] == 55:
        raise RuntimeError("the checker broke down")
    return record
"""


def test_json_logs_every_line_of_a_run_that_warns_dead_letters_and_fails(
    tmp_path: Path,
) -> None:
    """Two runs: one dead-lettering (with a stdout sink), then a resumed one that skips a
    record and fails. Every line either writes on stdout or stderr parses as one JSON
    object; the start line, the summary and the error come as events with their fields."""
    feed(tmp_path, 100)
    (tmp_path / "parse.py").write_text(PARSE)
    (tmp_path / "strict.py").write_text(STRICT)
    pipeline = write_pipeline(
        tmp_path,
        sources=[entry("in", "file", connection={"path": "in.jsonl"})],
        processors=[entry("parse", "map", plugin_path="parse.py", on_error="dead_letter")],
        sinks=[
            entry("out", "file", connection={"path": "out.jsonl"}),
            entry("echo", "stdout"),
        ],
        dead_letter=entry("failed", "file", connection={"path": "failed.jsonl"}),
        batch={"size": 5, "linger_ms": 0},
    )

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(DATAFLARE), "--log-format", "json", "run", str(pipeline)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    first = run()
    assert first.returncode == 0, first.stderr
    # Appended input, a skipping first step and a failing second one: the run resumes
    # (its start line), warns, and fails.
    with (tmp_path / "in.jsonl").open("a") as more:
        more.write('{"id":43}\n{"id":55}\n')
    document = yaml.safe_load(pipeline.read_text())
    document["processors"][0]["config"]["on_error"] = "skip"
    document["processors"].append(entry("strict", "map", plugin_path="strict.py"))
    pipeline.write_text(yaml.safe_dump(document, sort_keys=False))
    second = run()
    assert second.returncode == 1, second.stderr
    for done in (first, second):
        for stream in (done.stdout, done.stderr):
            for line in stream.splitlines():
                parsed = json.loads(line)  # fails the test on any line that is not JSON
                assert isinstance(parsed, dict), line
    records = [json.loads(line) for line in first.stdout.splitlines()]
    assert {"id": 0} in records  # the stdout sink's records: JSON values, one per line
    events = [json.loads(line) for line in first.stderr.splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(e) for e in events), events
    warnings = [e for e in events if e["level"] == "WARNING"]
    assert "dead-lettered a record" in warnings[0]["message"]
    assert "dead-lettered 9 more record(s)" in warnings[1]["message"]
    assert len(warnings) == 2  # ten dead letters: the first, then one summary
    summary = next(e for e in events if e.get("event") == "summary")
    assert summary["status"] == "completed"
    stages = {stage["stage"]: stage for stage in summary["stages"]}
    assert stages["parse"]["errored"] == 10
    assert stages["failed"]["in"] == 10
    later = [json.loads(line) for line in second.stderr.splitlines()]
    assert later[0]["event"] == "start"
    assert later[0]["message"].startswith("resuming from ")
    assert any("skipped a record" in e["message"] for e in later if e["level"] == "WARNING")
    assert any(e.get("event") == "summary" and e["status"] == "failed" for e in later)
    error = later[-1]
    assert error["event"] == "error"
    assert error["level"] == "ERROR"
    assert "RuntimeError: the checker broke down" in error["message"]


# -- 2. re-runs: resuming says so first; --reset never leaves a silent duplicate ----------


def test_a_resumed_run_says_so_on_its_first_line(tmp_path: Path) -> None:
    feed(tmp_path, 10)
    pipeline = copy_pipeline(tmp_path)
    assert invoke("run", "--quiet", str(pipeline))[0] == 0
    code, _, stderr = invoke("run", "--quiet", str(pipeline))
    assert code == 0
    checkpoint = tmp_path / ".dataflare" / "ops.checkpoint.json"
    assert stderr.splitlines()[0] == (
        f"resuming from {checkpoint}: source 'in' (file): skipping 10 record(s) already "
        "delivered (in.jsonl up to line 10); --reset starts over"
    )


def test_reset_refuses_to_append_a_second_copy_and_discards_nothing(tmp_path: Path) -> None:
    """mode: append (the default) with lines in the file: --reset stops before discarding
    anything, saying how to go on; the output and the checkpoint stay as they were."""
    feed(tmp_path, 6)
    pipeline = copy_pipeline(tmp_path)
    assert invoke("run", "--quiet", str(pipeline))[0] == 0
    out = tmp_path / "out.jsonl"
    checkpoint = tmp_path / ".dataflare" / "ops.checkpoint.json"
    before = (out.read_bytes(), checkpoint.read_bytes())
    code, _, stderr = invoke("run", "--quiet", "--reset", str(pipeline))
    assert code == 2
    assert stderr.splitlines()[-1] == (
        f"error: --reset: sink 'out' (file): {out} (6 lines) would get a second copy of "
        "every record appended (mode: append); set mode: overwrite on this sink (a fresh "
        f"start empties it) or move {out} away, then run --reset again; nothing was "
        "discarded"
    )
    assert (out.read_bytes(), checkpoint.read_bytes()) == before


def test_reset_with_overwrite_or_an_empty_file_writes_one_copy(tmp_path: Path) -> None:
    feed(tmp_path, 6)
    pipeline = copy_pipeline(tmp_path, mode="overwrite")
    assert invoke("run", "--quiet", str(pipeline))[0] == 0
    assert invoke("run", "--quiet", "--reset", str(pipeline))[0] == 0
    out = tmp_path / "out.jsonl"
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == list(range(6))
    # Append mode after the file was moved away: nothing to duplicate.
    pipeline = copy_pipeline(tmp_path)
    out.rename(tmp_path / "kept.jsonl")
    assert invoke("run", "--quiet", "--reset", str(pipeline))[0] == 0
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == list(range(6))


# -- 3. small gaps -------------------------------------------------------------------


def test_validate_reports_every_problem_not_only_the_first(tmp_path: Path) -> None:
    feed(tmp_path, 1)
    pipeline = write_pipeline(
        tmp_path,
        sources=[entry("in", "file", connection={"path": "in.jsonl"}, bogus=1)],
        processors=[entry("p", "filter", plugin_path="keep.py", on_eror="skip")],
        sinks=[entry("out", "file", connection={"pth": "out.jsonl"})],
    )
    code, stdout, stderr = invoke("validate", str(pipeline))
    assert code == 2
    assert stdout == ""
    lines = stderr.splitlines()
    assert lines[0] == f"error: {pipeline}: 3 problem(s)"
    assert "sources[0].config.bogus: unknown key 'bogus'" in lines[1]
    assert (
        "processors[0].config.on_eror: unknown key 'on_eror' (did you mean 'on_error'?)"
        in (lines[2])
    )
    assert "sinks[0].config.connection.pth: unknown key 'pth'" in lines[3]
    assert len(lines) == 4


def test_validate_lists_every_plugin_that_fails_to_load(tmp_path: Path) -> None:
    feed(tmp_path, 1)
    pipeline = write_pipeline(
        tmp_path,
        sources=[entry("in", "file", connection={"path": "in.jsonl"})],
        processors=[
            entry("a", "map", plugin_path=str(PLUGINS / "keep_even.py")),
            entry("b", "map", plugin_path=str(GUEST_EXAMPLES / "contains_filter.py")),
        ],
        sinks=[entry("out", "file", connection={"path": "out.jsonl"})],
    )
    code, _, stderr = invoke("validate", str(pipeline))
    assert code == 2
    lines = stderr.splitlines()
    assert lines[0] == f"error: {pipeline}: 2 problem(s)"
    assert "processors[0].config.plugin_type: is map but" in lines[1]
    assert "processors[1].config.plugin_type: is map but" in lines[2]


def test_one_problem_is_still_one_line(tmp_path: Path) -> None:
    feed(tmp_path, 1)
    pipeline = write_pipeline(
        tmp_path,
        sources=[entry("in", "file", connection={"path": "in.jsonl"})],
        sinks=[entry("out", "file", connection={"pth": "out.jsonl"})],
    )
    code, _, stderr = invoke("validate", str(pipeline))
    assert code == 2
    assert len(stderr.splitlines()) == 1
    assert stderr.startswith(f"error: {pipeline}:")


def test_cache_info_lists_its_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATAFLARE_CACHE_DIR", str(tmp_path))
    (tmp_path / "builds").mkdir()
    (tmp_path / "compiled").mkdir()
    (tmp_path / "builds" / "upper-0123.wasm").write_bytes(b"x" * 3_000_000)
    older = tmp_path / "compiled" / "old.cwasm"
    older.write_bytes(b"y" * 1000)
    os.utime(older, (1_700_000_000, 1_700_000_000))
    (tmp_path / "compiled" / "new.cwasm").write_bytes(b"z" * 2000)
    code, stdout, _ = invoke("cache", "info")
    assert code == 0
    assert "upper-0123.wasm" not in stdout  # counts only, unless asked
    code, stdout, _ = invoke("cache", "info", "--list")
    assert code == 0
    listed = [line.split()[0] for line in stdout.splitlines() if line.startswith("    ")]
    assert listed == ["builds/upper-0123.wasm", "compiled/new.cwasm", "compiled/old.cwasm"]
    row = next(line for line in stdout.splitlines() if "upper-0123.wasm" in line)
    assert "2.9 MB" in row
    assert "2023-11-14" in next(line for line in stdout.splitlines() if "old.cwasm" in line)


def test_a_missing_parameter_is_asked_for_where_run_takes_it(tmp_path: Path) -> None:
    """run has no -e: the message says params: in the pipeline (and -e for test only)."""
    feed(tmp_path, 1)
    (tmp_path / "needy.py").write_text(
        "import dataflare\n\n@dataflare.init(params={'needle': None})\n"
        "def prepare(params):\n    return params['needle']\n\n"
        "@dataflare.filter\ndef needy(record, needle):\n    return True\n"
    )
    pipeline = write_pipeline(
        tmp_path,
        sources=[entry("in", "file", connection={"path": "in.jsonl"})],
        processors=[entry("needy", "filter", plugin_path="needy.py")],
        sinks=[entry("out", "file", connection={"path": "out.jsonl"})],
    )
    code, _, stderr = invoke("run", "--quiet", str(pipeline))
    assert code == 2
    assert "needs parameter 'needle'; in a pipeline, give it under its params: (needle: VALUE)" in (
        stderr
    )
    assert "with dataflare test, -e needle=VALUE" in stderr
    run_options = {opt for param in main.commands["run"].params for opt in param.opts}
    assert "-e" not in run_options  # what the message must not offer run


def test_the_live_table_uses_the_terminals_real_width(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 160-column terminal with a stale COLUMNS=80 in the environment: the table is drawn
    160 wide, every kind whole (no "filter…")."""
    from rich.console import Console

    from dataflare_host.cli._progress import RichProgress, summary_table

    monkeypatch.setenv("COLUMNS", "80")
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    try:
        with open(follower, "w", encoding="utf-8", closefd=False) as terminal:
            console = Console(file=terminal, force_terminal=True)
            progress = RichProgress("a-pipeline-with-a-long-name", console=console)
            stages = [
                StageStats("incoming-events-from-a-file", "source", "generator"),
                StageStats("keep-only-the-records-that-matter", "processor", "filter_map"),
                StageStats("written-out-to-the-file-sink", "sink", "elasticsearch"),
            ]
            progress.update(stages)
            if progress._live is not None:
                progress._live.stop()
            assert console.width == 160
            with console.capture() as captured:
                console.print(summary_table(stages, "t"))
    finally:
        os.close(follower)
        os.close(leader)
    assert "filter_map" in captured.get()
    assert "elasticsearch" in captured.get()


def test_shell_completion_scripts_are_produced() -> None:
    """click's completion: _DATAFLARE_COMPLETE=<shell>_source prints the script to source."""
    for shell, marker in (
        ("bash", "complete -o nosort -F _dataflare_completion dataflare"),
        ("zsh", "compdef _dataflare_completion dataflare"),
        ("fish", "complete --no-files --command dataflare"),
    ):
        done = subprocess.run(
            [str(DATAFLARE)],
            env={**os.environ, "_DATAFLARE_COMPLETE": f"{shell}_source"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert marker in done.stdout, (shell, done.stdout)
    done = subprocess.run(
        [str(DATAFLARE)],
        env={
            **os.environ,
            "_DATAFLARE_COMPLETE": "bash_complete",
            "COMP_WORDS": "dataflare gr",
            "COMP_CWORD": "1",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "plain,graph" in done.stdout


# -- 4. pictures ------------------------------------------------------------------------


def test_graph_prints_mermaid_by_default_and_svg_on_request(tmp_path: Path) -> None:
    feed(tmp_path, 1)
    pipeline = write_pipeline(
        tmp_path,
        sources=[entry("in", "file", connection={"path": "in.jsonl"})],
        processors=[
            entry(
                "upper",
                "map",
                plugin_path=str(GUEST_EXAMPLES / "uppercase_map.py"),
                plugin_source="wasm",
            )
        ],
        sinks=[entry("out", "file", connection={"path": "out.jsonl"})],
        workers="2",
    )
    code, stdout, _ = invoke("graph", str(pipeline))
    assert code == 0
    assert stdout.startswith("flowchart LR\n")
    assert "map · wasm" in stdout
    assert "n_in --> n_upper" in stdout
    code, stdout, _ = invoke("graph", "--format", "svg", str(pipeline))
    assert code == 0
    root = ET.fromstring(stdout)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert {"in", "upper", "out"} <= {
        t.text for t in root.iter("{http://www.w3.org/2000/svg}title")
    }


def test_graph_of_a_broken_file_is_one_located_line(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path, sources=[], sinks=[entry("out", "stdout")])
    code, stdout, stderr = invoke("graph", str(pipeline))
    assert code == 2
    assert stdout == ""
    assert stderr.startswith(f"error: {pipeline}:")


def test_run_serves_its_status_page_on_loopback(tmp_path: Path) -> None:
    """--status-port: the run says where its page is (an ephemeral port with 0)."""
    feed(tmp_path, 5)
    pipeline = copy_pipeline(tmp_path)
    code, _, stderr = invoke("run", "--quiet", "--status-port", "0", str(pipeline))
    assert code == 0
    assert any(line.startswith("status page: http://127.0.0.1:") for line in stderr.splitlines()), (
        stderr
    )
