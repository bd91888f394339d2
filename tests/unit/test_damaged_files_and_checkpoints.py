"""Files and checkpoints a faulty machine or operator breaks: torn writes, a checkpoint from
another file, unusable checkpoints, bad CSV.

Fast: native plugins only, pipelines run in-process through click's CliRunner on
the ``dataflare`` command (the crash and disk-full runs live in
``tests/pipelines/test_file_crash_and_disk_full.py``).
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from support.file_sources import read_all

from dataflare import PluginIOError, Record, SerializationError
from dataflare_host.cli._main import main
from dataflare_host.connectors import FileSink, FileSinkConfig, FileSource, FileSourceConfig

AGGREGATE = '''"""Counts records."""
import dataflare


@dataflare.aggregate(initial=b"0")
def count(accumulator: bytes, record: dataflare.Record) -> bytes:
    return str(int(accumulator) + 1).encode()
'''

WINDOWED = AGGREGATE.replace(
    'initial=b"0")', 'initial=b"0", window=dataflare.tumbling(1000))'
)


def entry(id: str, plugin_type: str, **config: Any) -> dict[str, Any]:
    return {"id": id, "type": "plugin", "config": {"plugin_type": plugin_type, **config}}


def write_pipeline(directory: Path, **document: Any) -> Path:
    file = directory / "pipeline.yaml"
    body = {"name": "trust", "checkpoint": {"path": "trust.checkpoint.json"}, **document}
    file.write_text(yaml.safe_dump(body, sort_keys=False))
    return file


def run_cli(pipeline: Path, *extra: str) -> tuple[int, list[str], str]:
    """``dataflare run --quiet``: exit code, the ``error:`` lines of stderr, all of stderr."""
    result = CliRunner().invoke(main, ["run", "--quiet", *extra, str(pipeline)])
    # A traceback on the CLI is what these items forbid: surface it as a failure.
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"the CLI raised {result.exception!r}") from result.exception
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "Traceback" not in result.stderr
    return result.exit_code, errors, result.stderr


def copy_pipeline(directory: Path, source: str = "in.jsonl", mode: str | None = None) -> Path:
    sink: dict[str, Any] = {"path": "out.jsonl"}
    if mode is not None:
        sink["mode"] = mode  # without one, --reset refuses to append to lines already there
    return write_pipeline(
        directory,
        sources=[entry("in", "file", connection={"path": source})],
        sinks=[entry("out", "file", connection=sink)],
    )


def lines_of(path: Path) -> list[Any]:
    """Every line of a JSONL file, parsed (a fused or torn line fails the test)."""
    return [json.loads(line) for line in path.read_bytes().splitlines()]


# -- the sink never appends after a torn write ------------------------------------------


def sink_write(path: Path, values: list[bytes], fmt: str | None = None) -> None:
    sink = FileSink(FileSinkConfig(str(path), format=fmt), {})  # type: ignore[arg-type]
    sink.connect()
    sink.write([Record(value, offset=i) for i, value in enumerate(values)])
    sink.close()


def test_jsonl_sink_cuts_a_torn_last_line_before_appending(tmp_path: Path) -> None:
    """A line cut short by a kill is dropped, not fused with the next record."""
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"id":1}\n{"id":2,"pad":"xxxx')  # killed mid-way through record 2
    sink_write(path, [b'{"id":2,"pad":"xxxxxxxx"}', b'{"id":3}'])
    assert lines_of(path) == [{"id": 1}, {"id": 2, "pad": "xxxxxxxx"}, {"id": 3}]


def test_a_torn_first_line_leaves_an_empty_file(tmp_path: Path) -> None:
    """No newline at all: nothing whole was written, so everything goes."""
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"id":1,"big":"' + b"x" * 3_000_000)  # larger than one scan chunk
    sink_write(path, [b'{"id":1}'])
    assert lines_of(path) == [{"id": 1}]


def test_csv_sink_cuts_a_row_torn_inside_a_quoted_newline(tmp_path: Path) -> None:
    """A CSV row torn right after a newline inside quotes still counts as torn."""
    path = tmp_path / "out.csv"
    path.write_bytes(b'id,note\r\n1,"two\nlines"\r\n2,"torn\n')
    sink_write(path, [b'{"id":2,"note":"whole"}'], "csv")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows == [{"id": "1", "note": "two\nlines"}, {"id": "2", "note": "whole"}]


def test_records_sink_cuts_a_torn_frame(tmp_path: Path) -> None:
    """A ``records`` frame cut short is dropped, so the file source reads the file again."""
    path = tmp_path / "out.records"
    sink_write(path, [b"a", b"b"], "records")
    whole = path.read_bytes()
    path.write_bytes(whole + whole[: len(whole) // 2])
    sink_write(path, [b"c"], "records")
    source = FileSource(FileSourceConfig(str(path)), {})
    source.connect(None)
    batch = source.read(10, 0.0)
    source.close()
    assert batch is not None
    assert [r.value for r in batch.records] == [b"a", b"b", b"c"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_full_disk_is_one_line_plugin_io_error() -> None:
    """ENOSPC while writing is a PluginIOError naming the file, the failure and the fix."""
    sink = FileSink(FileSinkConfig("/dev/full", format="jsonl"), {})
    sink.connect()
    with pytest.raises(PluginIOError) as raised:
        sink.write([Record(b'{"id":1}')])
    sink.close()
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("file sink /dev/full: writing 9 bytes failed: No space left")
    assert "free space" in message


def test_a_failed_write_is_cut_back_at_once(tmp_path: Path) -> None:
    """A write that fails half-way leaves the file ending on its last whole line."""
    path = tmp_path / "out.jsonl"
    sink = FileSink(FileSinkConfig(str(path)), {})
    sink.connect()
    sink.write([Record(b'{"id":1}')])
    assert sink._handle is not None
    real = sink._handle

    class HalfWriter:
        """Writes half of what it is given, then fails as a full disk does."""

        def __init__(self) -> None:
            self.calls = 0

        def write(self, data: memoryview) -> int:
            self.calls += 1
            if self.calls > 1:
                raise OSError(28, "No space left on device")
            return real.write(data[: len(data) // 2])

        def fileno(self) -> int:
            return real.fileno()

    sink._handle = HalfWriter()  # type: ignore[assignment]
    with pytest.raises(PluginIOError, match="No space left on device"):
        sink.write([Record(b'{"id":2,"pad":"' + b"x" * 100 + b'"}')])
    sink._handle = real
    sink.close()
    assert lines_of(path) == [{"id": 1}]


# -- a checkpoint from another file is refused ------------------------------------------


def test_a_checkpoint_from_another_file_is_refused_naming_reset(tmp_path: Path) -> None:
    """Pointed at a different (earlier-sorting) file, the run refuses instead of reading 0."""
    (tmp_path / "b.jsonl").write_text("".join(f'{{"id":{i}}}\n' for i in range(5)))
    (tmp_path / "a.jsonl").write_text("".join(f'{{"id":{i}}}\n' for i in range(10, 13)))
    code, errors, stderr = run_cli(copy_pipeline(tmp_path, "b.jsonl"))
    assert (code, errors) == (0, []), stderr
    code, errors, _ = run_cli(copy_pipeline(tmp_path, "a.jsonl"))
    assert code != 0
    assert len(errors) == 1
    assert "trust.checkpoint.json" in errors[0]
    assert "--reset" in errors[0]
    assert "b.jsonl" in errors[0]
    assert [e["id"] for e in lines_of(tmp_path / "out.jsonl")] == list(range(5))
    code, errors, _ = run_cli(copy_pipeline(tmp_path, "a.jsonl", mode="overwrite"), "--reset")
    assert (code, errors) == (0, [])
    assert [e["id"] for e in lines_of(tmp_path / "out.jsonl")] == [10, 11, 12]


def test_a_different_file_under_the_same_name_is_refused(tmp_path: Path) -> None:
    """The same name holding other contents (replaced, rewritten) is not resumed at line N."""
    source = tmp_path / "in.jsonl"
    source.write_text("".join(f'{{"id":{i}}}\n' for i in range(5)))
    pipeline = copy_pipeline(tmp_path)
    assert run_cli(pipeline)[:2] == (0, [])
    replacement = tmp_path / "new.jsonl"
    replacement.write_text("".join(f'{{"id":{i}}}\n' for i in range(100, 108)))
    replacement.replace(source)
    code, errors, _ = run_cli(pipeline)
    assert code != 0
    assert len(errors) == 1
    assert "is not the file the checkpoint's position" in errors[0]
    assert "--reset" in errors[0]


def test_the_same_file_grown_or_moved_still_resumes(tmp_path: Path) -> None:
    """Appending to the file, or moving it with its data intact, keeps the position valid."""
    source = tmp_path / "in.jsonl"
    source.write_text("".join(f'{{"id":{i}}}\n' for i in range(5)))
    pipeline = copy_pipeline(tmp_path)
    assert run_cli(pipeline)[:2] == (0, [])
    moved = tmp_path / "copy.jsonl"
    shutil.copyfile(source, moved)  # another inode, same contents
    moved.replace(source)
    with source.open("a") as handle:
        handle.write('{"id":5}\n')
    assert run_cli(pipeline)[:2] == (0, [])
    assert [e["id"] for e in lines_of(tmp_path / "out.jsonl")] == list(range(6))


def test_a_directory_source_goes_on_past_a_file_that_was_cleaned_away(
    tmp_path: Path,
) -> None:
    """Under the same directory, a vanished file is not a mismatch: later files are read."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "1.jsonl").write_text('{"id":1}\n')
    pipeline = copy_pipeline(tmp_path, "in")
    assert run_cli(pipeline)[:2] == (0, [])
    (folder / "1.jsonl").unlink()
    (folder / "2.jsonl").write_text('{"id":2}\n')
    assert run_cli(pipeline)[:2] == (0, [])
    assert [e["id"] for e in lines_of(tmp_path / "out.jsonl")] == [1, 2]


# -- unusable checkpoints are one line naming the file and --reset ----------------------


def counting_pipeline(directory: Path, plugin: str = AGGREGATE) -> Path:
    (directory / "count.py").write_text(plugin)
    (directory / "in.jsonl").write_text(
        "".join(f'{{"id":{i},"ts":{i * 100}}}\n' for i in range(5))
    )
    return write_pipeline(
        directory,
        sources=[entry("in", "file", connection={"path": "in.jsonl", "timestamp_field": "ts"})],
        processors=[entry("count", "aggregate", plugin_path="count.py")],
        sinks=[entry("out", "file", connection={"path": "out.jsonl", "mode": "overwrite"})],
    )


def assert_one_checkpoint_error(pipeline: Path) -> str:
    code, errors, stderr = run_cli(pipeline)
    assert code != 0, stderr
    assert len(errors) == 1, stderr
    assert "trust.checkpoint.json" in errors[0]
    assert "--reset" in errors[0]
    return errors[0]


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda text: "", id="empty"),
        pytest.param(lambda text: text[: len(text) // 2], id="truncated"),
        pytest.param(lambda text: "\udcff\udcfe\x00binary", id="binary"),
        pytest.param(lambda text: "[1, 2]", id="not-an-object"),
        pytest.param(
            lambda text: json.dumps({**json.loads(text), "positions": []}), id="positions-list"
        ),
    ],
)
def test_a_damaged_checkpoint_is_one_line_naming_reset(
    tmp_path: Path, damage: Any
) -> None:
    """Empty, truncated, binary or misshapen checkpoint files: one line, non-zero exit."""
    pipeline = counting_pipeline(tmp_path)
    assert run_cli(pipeline)[:2] == (0, [])
    checkpoint = tmp_path / "trust.checkpoint.json"
    checkpoint.write_bytes(
        damage(checkpoint.read_text()).encode("utf-8", "surrogateescape")
    )
    assert_one_checkpoint_error(pipeline)


@pytest.mark.parametrize(
    "position",
    [
        pytest.param(5, id="a-number"),  # AttributeError in the file source before
        pytest.param({"next": 3}, id="a-generator-position"),  # silently read from the start
        pytest.param({"file": "in.jsonl", "line": "x"}, id="a-bad-line"),  # ValueError
    ],
)
def test_another_connectors_position_is_one_line_naming_reset(
    tmp_path: Path, position: Any
) -> None:
    """A file source given a position it did not write refuses it, in one line."""
    pipeline = counting_pipeline(tmp_path)
    (tmp_path / "trust.checkpoint.json").write_text(
        json.dumps({"version": 1, "positions": {"in": position}, "accumulators": {}})
    )
    assert_one_checkpoint_error(pipeline)


def test_a_file_position_given_to_a_generator_is_one_line(tmp_path: Path) -> None:
    """A connector without its own check (the generator: KeyError) is caught by the run."""
    pipeline = write_pipeline(
        tmp_path,
        sources=[entry("in", "generator", connection={"count": 5})],
        sinks=[entry("out", "file", connection={"path": "out.jsonl"})],
    )
    (tmp_path / "trust.checkpoint.json").write_text(
        json.dumps(
            {"version": 1, "positions": {"in": {"file": "a", "line": 1}}, "accumulators": {}}
        )
    )
    error = assert_one_checkpoint_error(pipeline)
    assert "KeyError" in error


def test_adding_a_window_to_a_checkpointed_aggregate_is_one_line(tmp_path: Path) -> None:
    """The old accumulator is not a window state: refused up front, not a TypeError."""
    pipeline = counting_pipeline(tmp_path)
    assert run_cli(pipeline)[:2] == (0, [])
    (tmp_path / "count.py").write_text(WINDOWED)
    with (tmp_path / "in.jsonl").open("a") as handle:
        handle.write('{"id":5,"ts":500}\n')
    error = assert_one_checkpoint_error(pipeline)
    assert "processor 'count'" in error
    code, errors, _ = run_cli(pipeline, "--reset")
    assert (code, errors) == (0, [])


# -- CSV sources ------------------------------------------------------------------------


def test_a_short_csv_row_is_an_error_naming_file_and_line(tmp_path: Path) -> None:
    """A row with fewer fields than the header is not padded with nulls."""
    path = tmp_path / "people.csv"
    path.write_text("id,name,city\n1,ann,oslo\n2,bob\n")
    expected = r"people\.csv:3: row has 2 field\(s\), the header has 3"
    with pytest.raises(SerializationError, match=expected):
        read_all(path, 100)


def test_a_bom_is_not_part_of_the_first_header_name(tmp_path: Path) -> None:
    """A UTF-8 BOM (Excel's CSV export) is dropped, so key_field matches the first column."""
    path = tmp_path / "people.csv"
    path.write_bytes(b"\xef\xbb\xbfid,name\n7,ann\n")
    (record,) = read_all(path, 100, key_field="id")
    assert record.key == b"7"
    assert json.loads(record.value) == {"id": "7", "name": "ann"}


def test_invalid_utf8_names_file_and_line(tmp_path: Path) -> None:
    """A bad byte is reported with the file and the line it is on."""
    path = tmp_path / "people.csv"
    path.write_bytes(b"id,name\n1,ann\n" + b"2,b\xffb\n" * 3000)  # past a decoder chunk
    with pytest.raises(SerializationError, match=r"people\.csv:3: not valid UTF-8"):
        read_all(path, 100)


def test_quoted_newlines_keep_their_line_numbers(tmp_path: Path) -> None:
    """Decoding line by line still hands the csv module quoted newlines whole."""
    path = tmp_path / "people.csv"
    path.write_text('id,note\n1,"two\nlines"\n2\n')
    with pytest.raises(SerializationError, match=r"people\.csv:4: row has 1 field"):
        read_all(path, 100)
    path.write_text('id,note\n1,"two\nlines"\n')
    (record,) = read_all(path, 100)
    assert json.loads(record.value) == {"id": "1", "note": "two\nlines"}


def test_a_jsonl_bom_is_dropped_too(tmp_path: Path) -> None:
    """A JSONL file saved with a BOM reads like one without."""
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"id":1}\n')
    (record,) = read_all(path, 100, key_field="id")
    assert (record.value, record.key) == (b'{"id":1}', b"1")
