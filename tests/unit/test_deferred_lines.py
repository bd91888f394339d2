"""A file source that defers its records (for worker processes) reads what it reads without.

``FileSource.defer_records`` leaves the lines of a batch unmade (``LineRecords``);
made records, over the wire and back, they must be the records, positions and
errors of the same source read the ordinary way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dataflare import Record, SerializationError
from dataflare_host.connectors import FileSource, FileSourceConfig, LineRecords
from dataflare_host.pipeline.engines import _wire
from dataflare_host.plugins._chain import ChainResult


def read_batches(path: Path, *, defer: bool, size: int, **config: Any) -> list[Any]:
    source = FileSource(FileSourceConfig(str(path), **config), {})
    if defer:
        source.defer_records()
    source.connect(None)
    batches = []
    try:
        while (batch := source.read(size, 0.0)) is not None:
            batches.append(batch)
    finally:
        source.close()
    return batches


def shown(records: Any) -> list[tuple[Any, ...]]:
    return [(r.value, r.key, r.timestamp, dict(r.metadata), r.offset) for r in records]


def shipped_and_landed(records: Any) -> list[Record]:
    return _wire.land_batch(_wire.decode(_wire.encode(_wire.ship_batch(records))))


def write_files(directory: Path) -> Path:
    """Two JSONL files: blank lines (the source skips them), CRLF ends, a byte-order mark."""
    folder = directory / "in"
    folder.mkdir()
    first = [json.dumps({"i": i}) for i in range(23)]
    first[7] = ""
    first[15] = "   "
    (folder / "a.jsonl").write_bytes(b"\xef\xbb\xbf" + "\r\n".join(first).encode() + b"\r\n")
    second = [json.dumps({"j": j, "s": "caf\u00e9"}) for j in range(17)]
    (folder / "b.jsonl").write_text("\n".join(second))  # no newline after the last line
    return folder


@pytest.mark.parametrize("size", [1, 5, 8, 64])
def test_deferred_batches_hold_the_records_and_positions_of_ordinary_ones(
    tmp_path: Path, size: int
) -> None:
    folder = write_files(tmp_path)
    ordinary = read_batches(folder, defer=False, size=size, format="jsonl")
    deferred = read_batches(folder, defer=True, size=size, format="jsonl")
    assert [b.position for b in deferred] == [b.position for b in ordinary]
    assert [len(b.records) for b in deferred] == [len(b.records) for b in ordinary]
    assert any(isinstance(b.records, LineRecords) for b in deferred)
    for mine, theirs in zip(deferred, ordinary, strict=True):
        assert shown(mine.records) == shown(theirs.records)
        assert shown(shipped_and_landed(mine.records)) == shown(theirs.records)


def test_a_deferred_line_that_is_not_json_fails_with_the_sources_words(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    lines = [json.dumps({"i": i}) for i in range(30)]
    lines[12] = '{"i": 12} x'
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SerializationError) as ordinary:
        read_batches(path, defer=False, size=10)
    batches = read_batches(path, defer=True, size=10)  # read: nothing is checked yet
    assert len(batches) == 3
    with pytest.raises(SerializationError) as made:
        shipped_and_landed(batches[1].records)
    assert str(made.value) == str(ordinary.value)
    assert str(made.value).startswith(f"{path}:13: not valid JSON (")


def test_validate_false_and_lines_format_pass_any_line_through(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_text("not json\n{\n}\n")
    for config in ({"format": "lines"}, {"format": "jsonl", "validate": False}):
        ordinary = read_batches(path, defer=False, size=10, **config)
        deferred = read_batches(path, defer=True, size=10, **config)
        assert shown(shipped_and_landed(deferred[0].records)) == shown(ordinary[0].records)


def test_worker_outputs_are_made_records_only_when_used() -> None:
    records = [
        Record(b'{"a":1}', b"k", 5, {"file": "x", "line": "1"}, 3),
        Record(b"two", None, None, {}, 4),
    ]
    wire = _wire.from_result(ChainResult(records))
    outputs = _wire.to_result(_wire.decode(_wire.encode(wire))).outputs
    assert isinstance(outputs, _wire.WorkerRecords)
    assert len(outputs) == 2
    assert outputs.newline_joined() == b'{"a":1}\ntwo'
    assert shown(outputs) == shown(records)
    assert _wire.frame_records(outputs) == outputs.frame  # passed on unmade
