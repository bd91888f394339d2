"""@look_back: warming a plugin up before it processes, in pipelines, in WASM, on the CLI.

The pipelines run in-process (``Pipeline.from_file(...).run(handle_signals=False)``);
every expected running total is computed here from the amounts the test wrote.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from support.cli import invoke_main
from support.output import line_of
from support.paths import EXAMPLES
from support.pipeline_runs import run_to_end

from dataflare import ConfigurationError, Record
from dataflare_host import Sandbox, load_plugin
from dataflare_host.pipeline._checkpoint import Checkpoint
from dataflare_host.pipeline._runner import Pipeline

SUM = EXAMPLES / "sum_aggregate.py"
FIXTURES = Path(__file__).parent.parent / "window_fixtures"
REMEMBER = FIXTURES / "remember_seen_map.py"
RESUME_FIELD = FIXTURES / "resume_field_aggregate.py"


# -- pipelines ------------------------------------------------------------------


def file_connector(id: str, path: str, **connection: Any) -> dict[str, Any]:
    return {
        "id": id,
        "type": "plugin",
        "config": {"plugin_type": "file", "connection": {"path": path, **connection}},
    }


def write_pipeline(
    directory: Path,
    name: str,
    plugin: Path,
    *,
    source: str = "in.jsonl",
    sink: str = "totals.jsonl",
    **processor: Any,
) -> Path:
    """``source`` -> the aggregate at ``plugin`` (id ``total``) -> ``sink``.

    The checkpoint is ``<name>.checkpoint.json`` beside the file, so each name
    starts fresh. A ``.wasm`` plugin runs as a component.
    """
    config: dict[str, Any] = {"plugin_type": "aggregate", "plugin_path": str(plugin), **processor}
    if plugin.suffix == ".wasm":
        config["plugin_source"] = "wasm"
    document = {
        "name": name,
        "checkpoint": {"path": f"{name}.checkpoint.json"},
        "sources": [file_connector("in", source)],
        "processors": [{"id": "total", "type": "plugin", "config": config}],
        "sinks": [file_connector("out", sink)],
    }
    file = directory / f"{name}.yaml"
    file.write_text(yaml.safe_dump(document, sort_keys=False))
    return file


def look_back_from(path: str, **selection: int) -> dict[str, Any]:
    """A ``look_back:`` reading the file at ``path``."""
    return {"source": {"plugin_type": "file", "connection": {"path": path}}, **selection}


def write_amounts(path: Path, amounts: Sequence[int]) -> None:
    path.write_text("".join(json.dumps({"amount": a}) + "\n" for a in amounts))


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def running(start: int, amounts: Sequence[int]) -> list[str]:
    """The running totals from ``start``, as the sink writes them."""
    return [str(total) for total in itertools.accumulate(amounts, initial=start)][1:]


@pytest.fixture(scope="module")
def sum_wasm(component_builder: Any) -> Path:
    """guest_examples/sum_aggregate.py as a component, built once."""
    return component_builder(SUM)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def remember_wasm(component_builder: Any) -> Path:
    """The remember-what-look-back-saw map fixture as a component, built once."""
    return component_builder(REMEMBER)  # type: ignore[no-any-return]


@pytest.mark.parametrize("runtime", ["native", "wasm"])
def test_look_back_restores_an_aggregates_running_value_after_a_restart(
    tmp_path: Path, runtime: str, request: pytest.FixtureRequest
) -> None:
    """A new pipeline (fresh checkpoint, new input) resumes the sum from the last total written."""
    plugin = request.getfixturevalue("sum_wasm") if runtime == "wasm" else SUM
    first, second = [3, 4, 10], [1, 5, 20]
    write_amounts(tmp_path / "day1.jsonl", first)
    summary = run_to_end(write_pipeline(tmp_path, "day1", plugin, source="day1.jsonl"))
    assert (summary.status, summary.error) == ("completed", None)
    assert lines(tmp_path / "totals.jsonl") == running(0, first)

    write_amounts(tmp_path / "day2.jsonl", second)
    restarted = write_pipeline(
        tmp_path,
        "day2",
        plugin,
        source="day2.jsonl",
        look_back=look_back_from("totals.jsonl", last=1),
    )
    assert not (tmp_path / "day2.checkpoint.json").exists()
    summary = run_to_end(restarted)
    assert (summary.status, summary.error) == ("completed", None)
    assert lines(tmp_path / "totals.jsonl") == running(0, first) + running(17, second)


def test_checkpointed_state_wins_over_look_back(tmp_path: Path) -> None:
    """When the checkpoint holds the processor's state, look_back is not used."""
    write_amounts(tmp_path / "in.jsonl", [2, 3])
    assert run_to_end(write_pipeline(tmp_path, "p", SUM)).status == "completed"
    (tmp_path / "old_totals.jsonl").write_text("1000\n")
    with (tmp_path / "in.jsonl").open("a") as handle:
        handle.write(json.dumps({"amount": 4}) + "\n")
    resumed = write_pipeline(
        tmp_path, "p", SUM, look_back=look_back_from("old_totals.jsonl", last=1)
    )
    summary = run_to_end(resumed)
    assert (summary.status, summary.error, summary.resumed) == ("completed", None, True)
    assert lines(tmp_path / "totals.jsonl") == ["2", "5", "9"]


def test_look_back_age_ms_selects_records_by_timestamp(tmp_path: Path) -> None:
    """age_ms keeps only records whose timestamp is at most that old (none without one)."""
    now = int(time.time() * 1000)
    history = [
        {"total": 50, "ts": now - 10_000},  # 10 s old: kept
        {"total": 999, "ts": now - 3_600_000},  # an hour old: too old
        {"total": 777},  # no timestamp: not known to be young
    ]
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(d) + "\n" for d in history))
    write_amounts(tmp_path / "in.jsonl", [1, 2])
    look_back = look_back_from("history.jsonl", age_ms=60_000)
    look_back["source"]["connection"]["timestamp_field"] = "ts"
    summary = run_to_end(write_pipeline(tmp_path, "p", RESUME_FIELD, look_back=look_back))
    assert (summary.status, summary.error) == ("completed", None)
    assert lines(tmp_path / "totals.jsonl") == running(50, [1, 2])


def test_look_back_last_n_gives_the_hook_the_last_n_records(tmp_path: Path) -> None:
    """last: 1 skips a bad total two lines back, which last: 3 feeds the hook (and fails)."""
    (tmp_path / "old.jsonl").write_text('5\n"not a total"\n7\n')
    write_amounts(tmp_path / "in.jsonl", [1])
    summary = run_to_end(
        write_pipeline(tmp_path, "one", SUM, look_back=look_back_from("old.jsonl", last=1))
    )
    assert (summary.status, summary.error) == ("completed", None)
    assert lines(tmp_path / "totals.jsonl") == ["8"]
    summary = run_to_end(
        write_pipeline(tmp_path, "three", SUM, look_back=look_back_from("old.jsonl", last=3))
    )
    assert summary.status == "failed"


def test_failing_look_back_hook_fails_the_run_naming_processor_and_record(tmp_path: Path) -> None:
    """A hook refusing a record fails the run before any record moves, saying where."""
    (tmp_path / "old.jsonl").write_text('5\n"not a total"\n7\n')
    write_amounts(tmp_path / "in.jsonl", [1])
    look_back = look_back_from("old.jsonl", last=2)
    summary = run_to_end(write_pipeline(tmp_path, "p", SUM, look_back=look_back))
    assert summary.status == "failed"
    assert summary.error is not None
    assert summary.error.startswith("processor 'total': look_back failed: ")
    assert "failed at record offset 1 (sum_aggregate.py:19): ValueError:" in summary.error
    assert summary.error.endswith("(record old.jsonl line 2, value '\"not a total\"')")
    assert not (tmp_path / "totals.jsonl").exists()
    assert not (tmp_path / "p.checkpoint.json").exists()


def test_look_back_for_a_plugin_without_a_hook_is_a_located_config_error(tmp_path: Path) -> None:
    """look_back: on a plugin with no @look_back hook is refused, naming file, line and path."""
    (tmp_path / "old.jsonl").write_text("5\n")
    write_amounts(tmp_path / "in.jsonl", [1])
    plugin = EXAMPLES / "windowed_count_aggregate.py"
    file = write_pipeline(tmp_path, "p", plugin, look_back=look_back_from("old.jsonl", last=1))
    line = line_of(file.read_text(), "look_back:")
    with pytest.raises(ConfigurationError) as caught:
        Pipeline.from_file(file)
    assert str(caught.value) == (
        f"{file}:{line}: processors[0].config.look_back: {plugin} has no @look_back hook, "
        "so look_back: would do nothing"
    )


def test_hot_reloaded_plugin_keeps_what_look_back_taught_it(tmp_path: Path) -> None:
    """A processor swapped in by hot reload knows the look-back records like the one it replaced."""
    plugin = tmp_path / "remember.py"
    plugin.write_text(REMEMBER.read_text())
    (tmp_path / "seen.jsonl").write_text('"a"\n')
    (tmp_path / "in.jsonl").write_text('"a"\n')
    document = {
        "name": "p",
        "sources": [file_connector("in", "in.jsonl")],
        "processors": [
            {
                "id": "mark",
                "type": "plugin",
                "config": {
                    "plugin_type": "map",
                    "plugin_path": str(plugin),
                    "look_back": look_back_from("seen.jsonl", last=5),
                },
            }
        ],
        "sinks": [file_connector("out", "out.jsonl")],
    }
    file = tmp_path / "p.yaml"
    file.write_text(yaml.safe_dump(document, sort_keys=False))
    pipeline = Pipeline.from_file(file)
    try:
        pipeline._warm_up(Checkpoint())
        (stage,) = pipeline.processors
        assert stage.plugin.process([Record(b'"a"')]).outputs[0].value == b"old:1"
        plugin.write_text(REMEMBER.read_text() + "\n# edited\n")
        pipeline._hot_reload()
        assert pipeline.stats[1].reloads == 1
        assert stage.plugin.process([Record(b'"a"')]).outputs[0].value == b"old:1"
    finally:
        pipeline.close()


# -- WASM -----------------------------------------------------------------------

totals = st.one_of(
    st.integers(min_value=-(10**6), max_value=10**6).map(str),
    st.sampled_from(['"x"', "[1]", "null", "not json"]),
)


@pytest.mark.wasm
@given(
    history=st.lists(totals, max_size=6),
    amounts=st.lists(st.integers(min_value=-100, max_value=100), max_size=4),
)
def test_wasm_look_back_gives_the_same_accumulator_as_native(
    sum_wasm: Path, history: list[str], amounts: list[int]
) -> None:
    """Same warm-up records: same result (error included), accumulator and next outputs."""
    records = [Record(h.encode(), offset=i) for i, h in enumerate(history)]
    batch = [
        Record(json.dumps({"amount": a}).encode(), offset=100 + i) for i, a in enumerate(amounts)
    ]
    with load_plugin(SUM) as native, load_plugin(sum_wasm) as wasm:
        native_warm, wasm_warm = native.look_back(records), wasm.look_back(records)
        assert wasm_warm == native_warm
        assert wasm.accumulator == native.accumulator
        if native_warm.error is None:
            assert wasm.process(batch) == native.process(batch)


@pytest.mark.wasm
def test_wasm_look_back_state_survives_errors_and_is_replayed_after_traps(
    remember_wasm: Path,
) -> None:
    """A non-aggregate's look-back knowledge (its init context) survives a raise in the same
    instance, as natively, and is replayed into the fresh instance that replaces a trapped one."""
    with load_plugin(remember_wasm) as plugin:
        assert plugin.look_back([Record(b"a"), Record(b"b")]).error is None
        assert values(plugin.process(batch(b"a", b"c"))) == [b"old:1", b"new:2"]

        failed = plugin.process(batch(b"boom"))
        assert failed.error is not None
        assert failed.error.error_type == "ValueError"
        # calls go on: a Python exception keeps the instance (and its state), as natively
        assert values(plugin.process(batch(b"b", b"z", b"a"))) == [b"old:3", b"new:4", b"old:5"]

        trapped = plugin.process(batch(b"trap"))
        assert trapped.error is not None
        assert trapped.error.error_type == "Trap"
        assert values(plugin.process(batch(b"a", b"q"))) == [b"old:1", b"new:2"]


@pytest.mark.wasm
def test_wasm_look_back_state_reaches_every_parallel_instance(remember_wasm: Path) -> None:
    """Shards run on extra instances: each was warmed up with the same records."""
    sandbox = Sandbox(instances=2, min_shard=2)
    with load_plugin(remember_wasm, sandbox=sandbox) as plugin:
        assert plugin.look_back([Record(b"a")]).error is None
        result = plugin.process(batch(b"a", b"b", b"a", b"a", b"b", b"a"))
        assert result.error is None
        verdicts = [v.split(b":")[0] for v in values(result)]
        assert verdicts == [b"old", b"new", b"old", b"old", b"new", b"old"]


def batch(*values: bytes) -> list[Record]:
    return [Record(v, offset=10 + i) for i, v in enumerate(values)]


def values(result: Any) -> list[bytes]:
    assert result.error is None, result.error
    return [r.value for r in result.outputs]


# -- the command line -----------------------------------------------------------


def cli(*args: str) -> Any:
    return invoke_main(["test", *args])


def test_cli_lookback_last_uses_only_the_last_n_lines() -> None:
    """--lookback-last 1 warms up on the last line only; a bad earlier line is never seen."""
    history = ["--lookback-text", "not a total\n9"]
    done = cli(str(SUM), "--lookback-last", "1", *history, "--text", '{"amount": 1}')
    assert (done.exit_code, done.stdout, done.stderr) == (0, "10\n", "")
    done = cli(str(SUM), "--lookback-last", "2", *history, "--text", '{"amount": 1}')
    assert done.exit_code == 1
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(
        "error: plugin 'sum_field' (aggregate) failed at record offset 0 (sum_aggregate.py:19): "
    )


def test_cli_lookback_on_a_plugin_without_a_hook_is_one_error_line() -> None:
    """--lookback-last for a plugin with no @look_back hook: exit 2, one line saying so."""
    plugin = EXAMPLES / "uppercase_map.py"
    done = cli(str(plugin), "--lookback-last", "1", "--lookback-text", "x", "--text", "y")
    assert (done.exit_code, done.stdout) == (2, "")
    assert done.stderr.splitlines() == [
        f"error: {plugin} has no @look_back hook, so --lookback-last has nothing to warm up"
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lookback-last", "1"], "--lookback-last needs --lookback-text or --lookback-file"),
        (["--lookback-text", "5"], "--lookback-text/--lookback-file need --lookback-last N"),
    ],
)
def test_cli_lookback_without_its_partner_option_is_a_usage_error(
    args: list[str], message: str
) -> None:
    """--lookback-last without look-back input (or input without N): exit 2, the reason."""
    done = cli(str(SUM), *args, "--text", '{"amount": 1}')
    assert (done.exit_code, done.stdout) == (2, "")
    assert [line for line in done.stderr.splitlines() if "rror" in line] == [f"Error: {message}"]
    assert "Traceback" not in done.stderr
