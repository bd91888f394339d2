"""``dataflare run`` and ``dataflare validate`` on pipelines: exit codes, summary, signals.

In-process runs use click's CliRunner on ``host._cli.main``; the signal tests run
the installed console script in a subprocess, since a signal must reach a real
process's main thread.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from support.cli import cli_outcome
from support.output import summary_rows
from support.paths import EXAMPLES

from dataflare_host.cli._main import main

PLUGINS = Path(__file__).parent.parent / "pipeline_fixtures" / "plugins"
DATAFLARE = Path(sys.executable).parent / "dataflare"


def entry(id: str, plugin_type: str, **config: Any) -> dict[str, Any]:
    return {"id": id, "type": "plugin", "config": {"plugin_type": plugin_type, **config}}


def write_pipeline(directory: Path, **document: Any) -> Path:
    file = directory / "pipeline.yaml"
    file.write_text(yaml.safe_dump({"name": "cli", **document}, sort_keys=False))
    return file


@pytest.fixture
def tagging_pipeline(tmp_path: Path) -> Path:
    """JSONL of ids 0..49 -> keep even -> tag -> JSONL."""
    (tmp_path / "in.jsonl").write_text("".join(f'{{"id":{i}}}\n' for i in range(50)))
    return write_pipeline(
        tmp_path,
        sources=[entry("in", "file", connection={"path": "in.jsonl"})],
        processors=[
            entry("even", "filter", plugin_path=str(PLUGINS / "keep_even.py")),
            entry("tag", "map", plugin_path=str(PLUGINS / "tag.py"), params={"tag": "cli"}),
        ],
        sinks=[entry("out", "file", connection={"path": "out.jsonl"})],
        batch={"size": 8, "linger_ms": 0},
    )


def output_ids(directory: Path) -> list[int]:
    return [json.loads(line)["id"] for line in (directory / "out.jsonl").read_text().splitlines()]


def test_validate_accepts_a_good_pipeline_through_the_console_script(
    tagging_pipeline: Path,
) -> None:
    """``dataflare validate`` on a good file exits 0 and counts its stages."""
    done = subprocess.run([str(DATAFLARE), "validate", str(tagging_pipeline)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"{tagging_pipeline}: ok (1 source(s), 2 processor(s), 1 sink(s))\n"


def test_run_writes_the_output_and_prints_a_summary_per_stage(tagging_pipeline: Path) -> None:
    """``dataflare run`` exits 0, writes the output, and prints each stage's counts."""
    code, stdout, stderr = cli_outcome("run", str(tagging_pipeline))
    assert code == 0, stderr
    assert stdout == ""
    directory = tagging_pipeline.parent
    assert output_ids(directory) == list(range(0, 50, 2))
    assert "cli: completed in" in stderr
    rows = summary_rows(stderr)
    assert rows["in"][1:5] == ["source", "file", "", "50"]
    assert rows["even"][1:7] == ["processor", "filter", "50", "25", "25", "0"]
    assert rows["tag"][1:5] == ["processor", "map", "25", "25"]
    assert rows["out"][1:5] == ["sink", "file", "25", "25"]


def test_quiet_run_prints_only_the_final_summary(tagging_pipeline: Path) -> None:
    """``--quiet`` prints one summary table and no live progress."""
    code, _, stderr = cli_outcome("run", "--quiet", str(tagging_pipeline))
    assert code == 0, stderr
    assert stderr.count("cli: completed") == 1
    assert "running" not in stderr
    assert summary_rows(stderr)["out"][3:5] == ["25", "25"]


def test_rerun_resumes_and_reset_starts_over(tagging_pipeline: Path) -> None:
    """A second run resumes from the checkpoint (writes nothing); ``--reset`` refuses to
    append a second copy to the sink (mode: append), and with mode: overwrite reads all
    again into an emptied file."""
    directory = tagging_pipeline.parent
    assert cli_outcome("run", str(tagging_pipeline))[0] == 0
    code, _, stderr = cli_outcome("run", str(tagging_pipeline))
    assert code == 0
    assert "resumed from checkpoint" in stderr
    assert summary_rows(stderr)["out"][3:5] == ["0", "0"]
    assert output_ids(directory) == list(range(0, 50, 2))
    code, _, stderr = cli_outcome("run", "--reset", str(tagging_pipeline))
    assert code == 2
    assert "would get a second copy of every record appended" in stderr
    assert output_ids(directory) == list(range(0, 50, 2))
    document = yaml.safe_load(tagging_pipeline.read_text())
    document["sinks"][0]["config"]["connection"]["mode"] = "overwrite"
    tagging_pipeline.write_text(yaml.safe_dump(document))
    code, _, stderr = cli_outcome("run", "--reset", str(tagging_pipeline))
    assert code == 0
    assert "resumed" not in stderr
    assert output_ids(directory) == list(range(0, 50, 2))


def failing_pipeline(directory: Path) -> Path:
    (directory / "in.jsonl").write_text("".join(f'{{"id":{i}}}\n' for i in range(10)))
    return write_pipeline(
        directory,
        sources=[entry("in", "file", connection={"path": "in.jsonl"})],
        processors=[entry("guard", "map", plugin_path=str(PLUGINS / "fail_on_ids.py"),
                          params={"bad": "4"})],
        sinks=[entry("out", "file", connection={"path": "out.jsonl"})],
        batch={"size": 2, "linger_ms": 0},
    )


@pytest.mark.parametrize("quiet", [True, False], ids=["quiet", "progress"])
def test_failing_run_exits_1_with_one_error_line_naming_the_failure(
    tmp_path: Path, quiet: bool,
) -> None:
    """A processor failure exits 1; stderr has one ``error:`` line naming stage, plugin, record."""
    file = failing_pipeline(tmp_path)
    code, _, stderr = cli_outcome("run", *(["--quiet"] if quiet else []), str(file))
    assert code == 1
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    (error,) = errors
    for fragment in ("processor 'guard' failed", "plugin 'fail_on_ids' (map)",
                     "record offset 4", "in.jsonl line 5", "ValueError: id 4 is on the bad list"):
        assert fragment in error, (fragment, stderr)
    assert output_ids(tmp_path) == [0, 1, 2, 3]


def test_run_on_a_bad_config_exits_2_with_the_located_error(tmp_path: Path) -> None:
    """``run`` checks the file first: one ``error: file:line: path: message`` line, exit 2."""
    file = write_pipeline(
        tmp_path,
        sources=[entry("gen", "generator", connection={"count": "ten"})],
        sinks=[entry("out", "stdout")],
    )
    code, stdout, stderr = cli_outcome("run", str(file))
    assert (code, stdout) == (2, "")
    line = next(n for n, text in enumerate(file.read_text().splitlines(), 1) if "count:" in text)
    assert stderr == (f"error: {file}:{line}: sources[0].config.connection.count: "
                      "expected an integer, got 'ten'\n")


def wait_for_lines(path: Path, at_least: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= at_least:
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    raise AssertionError(f"{path} did not reach {at_least} lines")


def run_until_signalled(file: Path, out: Path, at_least: int,
                        signum: signal.Signals) -> tuple[int, str]:
    process = subprocess.Popen([str(DATAFLARE), "run", "--quiet", str(file)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_lines(out, at_least, process)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_signal_stops_an_endless_run_cleanly_and_the_restart_continues_exactly(
    tmp_path: Path, signum: signal.Signals,
) -> None:
    """SIGTERM/SIGINT: exit 0 (130 for SIGINT, the shell's Ctrl-C convention) after the batch
    in flight; output and checkpoint agree; no gap."""
    expected_code = 130 if signum is signal.SIGINT else 0
    file = write_pipeline(
        tmp_path,
        sources=[entry("gen", "generator", connection={"count": None, "rate": 2000})],
        sinks=[entry("out", "file", connection={"path": "out.jsonl"})],
        batch={"size": 50, "linger_ms": 10},
        checkpoint={"interval_ms": 100},
    )
    out = tmp_path / "out.jsonl"
    checkpoint = tmp_path / ".dataflare" / "cli.checkpoint.json"
    code, stderr = run_until_signalled(file, out, 200, signum)
    assert code == expected_code, stderr
    assert f"received {signum.name}: stopping" in stderr
    assert "cli: stopped" in stderr
    first = output_ids(tmp_path)
    assert first == list(range(len(first)))
    assert json.loads(checkpoint.read_text())["positions"] == {"gen": {"next": len(first)}}
    code, stderr = run_until_signalled(file, out, len(first) + 200, signum)
    assert code == expected_code, stderr
    both = output_ids(tmp_path)
    assert both == list(range(len(both)))
    assert len(both) >= len(first) + 200
    assert json.loads(checkpoint.read_text())["positions"] == {"gen": {"next": len(both)}}


def test_validate_loads_example_plugins_by_name_beside_the_pipeline(tmp_path: Path) -> None:
    """``plugin_name`` finds ``plugins/NAME.py`` beside the pipeline file."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "uppercase_map.py").write_text(
        (EXAMPLES / "uppercase_map.py").read_text())
    file = write_pipeline(
        tmp_path,
        sources=[entry("gen", "generator", connection={"count": 3, "shape": "text"})],
        processors=[entry("up", "map", plugin_name="uppercase_map")],
        sinks=[entry("out", "file", connection={"path": "out.txt"})],
    )
    assert cli_outcome("validate", str(file))[0] == 0
    assert cli_outcome("run", "--quiet", str(file))[0] == 0
    assert (tmp_path / "out.txt").read_text().splitlines() == [
        "LINE 0 STATUS=ACTIVE", "LINE 1 STATUS=PAUSED", "LINE 2 STATUS=DELETED"]


def test_a_failed_run_prints_its_error_once(tmp_path: Path) -> None:
    """One error line per failure: the CLI's, not also a log record of the same error."""
    (tmp_path / "bad.py").write_text(
        "import dataflare\n\n@dataflare.map\ndef boom(record):\n    raise ValueError('nope')\n"
    )
    file = tmp_path / "p.yaml"
    file.write_text(
        "sources:\n  - {id: in, type: plugin, config: {plugin_type: generator,"
        " connection: {count: 3}}}\n"
        "processors:\n  - {id: b, type: plugin, config: {plugin_type: map, plugin_path: bad.py}}\n"
        "sinks:\n  - {id: out, type: plugin, config: {plugin_type: stdout}}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "dataflare", "run", "--quiet", str(file)],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 1
    assert done.stderr.count("ValueError: nope") == 1, done.stderr
    assert "error: processor 'b' failed" in done.stderr


def test_dash_h_is_help() -> None:
    result = CliRunner().invoke(main, ["-h"])
    assert result.exit_code == 0
    assert "Usage:" in result.output
