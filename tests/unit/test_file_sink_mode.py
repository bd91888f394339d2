"""The file sink's ``mode: append|overwrite``, its interplay with checkpoints, and what
``dataflare run --reset`` says it will do to each sink's output before it does it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from support.cli import invoke_main

from dataflare import PluginIOError, Record
from dataflare_host.cli._main import main
from dataflare_host.connectors import FileSink, FileSinkConfig
from dataflare_host.connectors._records_codec import encode_batch
from dataflare_host.pipeline import Pipeline


def sink(path: Path, **config: Any) -> FileSink:
    return FileSink(FileSinkConfig(str(path), **config), {})


def write_once(file_sink: FileSink, *values: bytes) -> None:
    file_sink.connect()
    file_sink.write([Record(v, offset=i) for i, v in enumerate(values)])
    file_sink.close()


# -- the sink on its own ------------------------------------------------------------


@pytest.mark.parametrize(
    ("held", "mode", "resuming", "expected"),
    [
        pytest.param(
            b'{"old":1}\n', "append", False, '{"old":1}\n{"new":2}\n',
            id="append-keeps-what-the-file-holds-even-on-a-fresh-start",
        ),
        pytest.param(
            b'{"old":1}\n{"old":2}\n', "overwrite", False, '{"new":2}\n',
            id="overwrite-on-a-fresh-start-empties-the-file-first",
        ),
        pytest.param(
            b'{"old":1}\n{"torn"', "overwrite", True, '{"old":1}\n{"new":2}\n',
            id="overwrite-on-a-resumed-run-appends-and-still-cuts-a-torn-tail",
        ),
    ],
)
def test_a_run_start_keeps_or_empties_the_file_by_mode(
    tmp_path: Path, held: bytes, mode: str, resuming: bool, expected: str
) -> None:
    """Append (the default) keeps the file; overwrite empties it on a fresh start only: on
    a resumed run what the checkpoint covers stays, and only bytes no whole line covers go."""
    out = tmp_path / "out.jsonl"
    out.write_bytes(held)
    started = sink(out) if mode == "append" else sink(out, mode=mode)
    assert started.config.mode == mode
    started.run_starts(resuming=resuming)
    write_once(started, b'{"new":2}')
    assert out.read_text() == expected


def test_a_sink_names_the_output_a_fresh_start_would_append_to(tmp_path: Path) -> None:
    """``held_output`` is what ``--reset`` refuses to append a second copy after."""
    out = tmp_path / "out.jsonl"
    assert sink(out).held_output() is None
    out.write_text('{"old":1}\n')
    assert sink(out).held_output() == f"{out} (1 line)"


def test_overwrite_untold_appends_so_validate_connect_never_empties(tmp_path: Path) -> None:
    """``dataflare validate --connect`` connects sinks without running: nothing is lost."""
    out = tmp_path / "out.jsonl"
    out.write_text('{"old":1}\n')
    untold = sink(out, mode="overwrite")
    assert not untold.overwrites
    untold.connect()
    untold.close()
    assert out.read_text() == '{"old":1}\n'


def test_overwrite_writes_a_fresh_csv_header(tmp_path: Path) -> None:
    """The emptied file gets its header again (an appended one would not)."""
    out = tmp_path / "out.csv"
    out.write_text("a,b\n1,2\n")
    fresh = sink(out, mode="overwrite")
    fresh.run_starts(resuming=False)
    write_once(fresh, b'{"a":3,"b":4}')
    assert out.read_text().splitlines() == ["a,b", "3,4"]


@pytest.mark.parametrize(
    ("mode", "resuming", "fate"),
    [
        ("overwrite", False, "will be overwritten"),
        ("overwrite", True, "will be appended to"),
        ("append", False, "will be appended to"),
    ],
)
def test_describe_start_counts_lines_and_names_the_fate(
    tmp_path: Path, mode: str, resuming: bool, fate: str
) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("".join(f'{{"id":{i}}}\n' for i in range(1234)))
    assert sink(out, mode=mode).describe_start(resuming=resuming) == f"{out} (1,234 lines) {fate}"


def test_describe_start_of_a_missing_file_and_of_a_records_file(tmp_path: Path) -> None:
    missing = tmp_path / "none.jsonl"
    assert sink(missing, mode="overwrite").describe_start(resuming=False) == (
        f"{missing} does not exist yet; it will be created"
    )
    framed = tmp_path / "out.records"
    frame = encode_batch([Record(b"a"), Record(b"b")])
    framed.write_bytes((len(frame).to_bytes(4, "big") + frame) * 3)
    size = framed.stat().st_size
    assert sink(framed, mode="overwrite").describe_start(resuming=False) == (
        f"{framed} (3 frame(s), {size:,} bytes) will be overwritten"
    )


# -- in a pipeline run ------------------------------------------------------------------


def pipeline_file(directory: Path, *, mode: str | None, dead_letter: bool = False) -> Path:
    connection: dict[str, Any] = {"path": "out.jsonl"}
    if mode is not None:
        connection["mode"] = mode
    document: dict[str, Any] = {
        "name": "modes",
        "checkpoint": {"path": "modes.checkpoint.json"},
        "batch": {"size": 2, "linger_ms": 0},
        "sources": [
            {"id": "in", "type": "plugin",
             "config": {"plugin_type": "file", "connection": {"path": "in.jsonl"}}},
        ],
        "sinks": [
            {"id": "out", "type": "plugin",
             "config": {"plugin_type": "file", "connection": connection}},
            {"id": "echo", "type": "plugin", "config": {"plugin_type": "stdout"}},
        ],
    }
    if dead_letter:
        document["dead_letter"] = {
            "id": "rejects",
            "type": "plugin",
            "config": {"plugin_type": "file", "connection": {"path": "rejects.jsonl"}},
        }
    file = directory / "pipeline.yaml"
    file.write_text(yaml.safe_dump(document, sort_keys=False))
    return file


def feed(directory: Path, ids: range) -> None:
    with (directory / "in.jsonl").open("a") as handle:
        handle.writelines(f'{{"id":{i}}}\n' for i in ids)


def run(pipeline: Path, *extra: str) -> tuple[int, list[str]]:
    """``dataflare run --quiet``: exit code and the stderr lines before the summary."""
    result = invoke_main(["run", "--quiet", *extra, str(pipeline)])
    lines = result.stderr.splitlines()
    before_summary = lines[: next(i for i, line in enumerate(lines) if "modes:" in line)]
    return result.exit_code, [line for line in before_summary if line.strip()]


def ids(path: Path) -> list[int]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def test_overwrite_resumes_by_appending_and_a_reset_rewrites(tmp_path: Path) -> None:
    """Run 1 writes 0..4 over stale output; run 2 resumes (5..7 appended, nothing lost);
    ``--reset`` says what it will do, then rewrites the whole output once."""
    (tmp_path / "out.jsonl").write_text('{"id":-1}\n')  # a previous pipeline's output
    feed(tmp_path, range(5))
    pipeline = pipeline_file(tmp_path, mode="overwrite")
    out = tmp_path / "out.jsonl"
    assert run(pipeline) == (
        0,
        [f"starting fresh: sink 'out' (file): {out} (1 line) will be overwritten"],
    )
    assert ids(out) == list(range(5))
    feed(tmp_path, range(5, 8))
    checkpoint = tmp_path / "modes.checkpoint.json"
    assert run(pipeline) == (  # resumed: said first, nothing emptied
        0,
        [
            f"resuming from {checkpoint}: source 'in' (file): skipping 5 record(s) already "
            "delivered (in.jsonl up to line 5); --reset starts over"
        ],
    )
    assert ids(out) == list(range(8))
    code, lines = run(pipeline, "--reset")
    assert (code, lines) == (
        0,
        [
            f"--reset: discarding checkpoint {checkpoint} "
            "(positions of 1 source(s), state of 0 processor(s))",
            f"--reset: sink 'out' (file): {out} (8 lines) will be overwritten",
            "--reset: sink 'echo' (stdout): what it holds is kept; every source is read "
            "again from its start, so records already delivered are written to it again",
        ],
    )
    assert ids(out) == list(range(8))


def test_append_mode_reset_refuses_a_second_copy_until_the_file_is_moved(
    tmp_path: Path,
) -> None:
    """Append mode (the default): --reset would append a second copy after the 3 lines, so
    it refuses, changing nothing; with the file moved away it says what it does and writes
    one copy (the empty dead-letter file is appended to: it holds nothing to duplicate)."""
    feed(tmp_path, range(3))
    pipeline = pipeline_file(tmp_path, mode=None, dead_letter=True)
    assert run(pipeline) == (0, [])  # append mode announces nothing on a fresh start
    out, rejects = tmp_path / "out.jsonl", tmp_path / "rejects.jsonl"
    result = CliRunner().invoke(main, ["run", "--quiet", "--reset", str(pipeline)])
    assert result.exit_code == 2
    assert "would get a second copy of every record appended" in result.stderr
    assert ids(out) == [0, 1, 2]
    out.rename(tmp_path / "kept.jsonl")
    code, lines = run(pipeline, "--reset")
    assert code == 0
    assert lines[1:] == [
        f"--reset: sink 'out' (file): {out} does not exist yet; it will be created",
        lines[2],
        f"--reset: dead_letter 'rejects' (file): {rejects} (0 lines) will be appended to",
    ]
    assert lines[2].startswith("--reset: sink 'echo' (stdout): what it holds is kept")
    assert ids(out) == [0, 1, 2]


def test_reset_without_a_checkpoint_says_there_is_nothing_to_discard(tmp_path: Path) -> None:
    feed(tmp_path, range(2))
    pipeline = pipeline_file(tmp_path, mode="overwrite")
    code, lines = run(pipeline, "--reset")
    assert code == 0
    assert lines[0] == (
        f"--reset: no checkpoint at {tmp_path / 'modes.checkpoint.json'}, nothing to discard"
    )
    assert lines[1] == (
        f"--reset: sink 'out' (file): {tmp_path / 'out.jsonl'} does not exist yet; "
        "it will be created"
    )


def test_an_unreadable_checkpoint_fails_the_run_before_any_sink_is_emptied(
    tmp_path: Path,
) -> None:
    """Neither fresh nor resumed is known: the run fails on the checkpoint, output intact."""
    feed(tmp_path, range(2))
    pipeline = pipeline_file(tmp_path, mode="overwrite")
    (tmp_path / "out.jsonl").write_text('{"id":9}\n')
    (tmp_path / "modes.checkpoint.json").write_text("{not json")
    result = CliRunner().invoke(main, ["run", "--quiet", str(pipeline)])
    assert result.exit_code == 1
    assert "--reset" in result.stderr
    assert ids(tmp_path / "out.jsonl") == [9]


def run_in_python(directory: Path, mode: str) -> None:
    pipeline = Pipeline.from_file(pipeline_file(directory, mode=mode))
    try:
        assert pipeline.run(handle_signals=False).status == "completed"
    finally:
        pipeline.close()


@pytest.mark.parametrize(("mode", "first"), [("overwrite", [0, 1]), ("append", [9, 0, 1])])
def test_the_python_api_follows_the_mode_like_the_cli(
    tmp_path: Path, mode: str, first: list[int]
) -> None:
    """``Pipeline.run()`` without the CLI: a fresh start overwrites (or appends), and a
    resumed run appends what is new, in both modes."""
    feed(tmp_path, range(2))
    (tmp_path / "out.jsonl").write_text('{"id":9}\n')
    run_in_python(tmp_path, mode)
    assert ids(tmp_path / "out.jsonl") == first
    feed(tmp_path, range(2, 4))
    run_in_python(tmp_path, mode)  # resumes from the checkpoint
    assert ids(tmp_path / "out.jsonl") == [*first, 2, 3]


def test_validate_connect_never_empties_an_overwriting_sink(tmp_path: Path) -> None:
    """Connecting to check a pipeline is not a run start: the output stays."""
    feed(tmp_path, range(2))
    (tmp_path / "out.jsonl").write_text('{"id":9}\n')
    result = CliRunner().invoke(
        main, ["validate", "--connect", str(pipeline_file(tmp_path, mode="overwrite"))]
    )
    assert result.exit_code == 0, result.output
    assert ids(tmp_path / "out.jsonl") == [9]


def test_an_unknown_mode_is_a_located_error(tmp_path: Path) -> None:
    feed(tmp_path, range(1))
    pipeline = pipeline_file(tmp_path, mode="truncate")
    result = CliRunner().invoke(main, ["validate", str(pipeline)])
    assert result.exit_code == 2
    assert "sinks[0].config.connection.mode" in result.stderr
    assert "truncate" in result.stderr


# -- out/{partition}: one file per partition ------------------------------------------


def test_a_partition_sink_holds_what_every_partition_file_holds(tmp_path: Path) -> None:
    """Before any partition is chosen (the driver's sink, --reset's question), a
    ``{partition}`` path speaks for every file it matches: those holding lines would get a
    second copy on a fresh start in append mode; overwrite mode would empty them."""
    split = sink(tmp_path / "out" / "{partition}")
    assert split.held_output() is None
    assert split.describe_start(resuming=False) == (
        f"{tmp_path}/out/{{partition}}: no partition's file yet; each will be created"
    )
    (tmp_path / "out").mkdir()
    for name, lines in (("a.jsonl", 2), ("b.jsonl", 0), ("c.jsonl", 1)):
        (tmp_path / "out" / name).write_text('{"x":1}\n' * lines)
    (tmp_path / "out" / "sub").mkdir()  # a folder is no partition's file
    assert split.held_output() == (
        f"{tmp_path}/out/{{partition}}: 2 partition files ({tmp_path}/out/a.jsonl: 2 lines, "
        f"{tmp_path}/out/c.jsonl: 1 line)"
    )
    assert split.describe_start(resuming=True).endswith("1 line) will be appended to")
    assert "3 partition files" in split.describe_start(resuming=True)
    assert sink(tmp_path / "out" / "{partition}", mode="overwrite").held_output() is None
    named = sink(tmp_path / "out" / "x-{partition}.jsonl")
    assert named.held_output() is None  # matches none of them


def test_connecting_a_partition_sink_before_a_partition_creates_no_file(tmp_path: Path) -> None:
    """``validate --connect`` connects the driver's sink: it makes and checks the folder,
    and creates no file named ``{partition}`` (a glob over the folder would read it)."""
    split = sink(tmp_path / "out" / "{partition}")
    split.connect()
    split.close()
    assert (tmp_path / "out").is_dir()
    assert list((tmp_path / "out").iterdir()) == []
    (tmp_path / "a-file").write_text("")  # a folder that cannot be made, even by root
    in_the_way = rf"failed: {tmp_path}/a-file is a file, where a folder is needed; fix that"
    making = r"a-file/\{partition\}: making its folder .*"
    with pytest.raises(PluginIOError, match=making + in_the_way):
        sink(tmp_path / "a-file" / "{partition}").connect()
    with pytest.raises(PluginIOError, match=r"a-file/out/x\.jsonl: opening it " + in_the_way):
        sink(tmp_path / "a-file" / "out" / "x.jsonl").connect()
