"""A file source's line metadata crosses the WASM boundary as the line column (contract
0.4.0, flags bit 3) and reads in the guest exactly as natively: a map that leaves it
unmade sends it back as the line column, a plugin that reads it sees the same mapping,
and a batch that spans two files crosses with the metadata column instead."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from support.pipeline_runs import run_to_end
from support.record_files import read_records

pytestmark = pytest.mark.wasm

SHOUT = """
import dataflare


@dataflare.map
def shout(record: dataflare.Record) -> dataflare.Record:
    return record.evolve(value=record.value.upper())
"""

ODD_LINES_TAGGED = """
import dataflare


@dataflare.filter_map
def odd_lines_tagged(record: dataflare.Record) -> dataflare.Record | None:
    line = record.metadata["line"]
    if int(line) % 2 == 0:
        return None
    where = record.metadata["file"] + ":" + line
    return record.evolve(value=record.value + b" @" + where.encode())
"""


def run(folder: Path, source: str) -> tuple[bytes, list[tuple[bytes, dict[str, str], int]]]:
    """The pipeline over ``folder/in`` with both plugins in ``source``; what it wrote."""
    processors = [
        {
            "id": name,
            "type": "plugin",
            "config": {
                "plugin_type": kind,
                "plugin_source": source,
                "plugin_path": str(folder / f"{name}.py"),
            },
        }
        for name, kind in (("shout", "map"), ("odd_lines_tagged", "filter_map"))
    ]
    out = folder / source
    out.mkdir()
    document = {
        "name": f"lines-{source}",
        "batch": {"size": 7},  # batches of 7 over files of 10 lines: some span two files
        "sources": [
            {
                "id": "in",
                "type": "plugin",
                "config": {
                    "plugin_type": "file",
                    "connection": {"path": str(folder / "in"), "format": "jsonl"},
                },
            }
        ],
        "processors": processors,
        "sinks": [
            {
                "id": "jsonl",
                "type": "plugin",
                "config": {"plugin_type": "file", "connection": {"path": str(out / "out.jsonl")}},
            },
            {
                "id": "lossless",
                "type": "plugin",
                "config": {
                    "plugin_type": "file",
                    "connection": {"path": str(out / "out.records"), "format": "records"},
                },
            },
        ],
    }
    file = folder / f"{source}.yaml"
    file.write_text(yaml.safe_dump(document, sort_keys=False))
    summary = run_to_end(file)
    assert summary.status == "completed", summary.error
    lossless = [(r.value, dict(r.metadata), r.offset) for r in read_records(out / "out.records")]
    return (out / "out.jsonl").read_bytes(), lossless


def test_line_metadata_reads_the_same_in_the_guest_as_natively(tmp_path: Path) -> None:
    (tmp_path / "shout.py").write_text(SHOUT)
    (tmp_path / "odd_lines_tagged.py").write_text(ODD_LINES_TAGGED)
    (tmp_path / "in").mkdir()
    for part in range(3):
        lines = [json.dumps({"id": part * 10 + i}) for i in range(10)]
        (tmp_path / "in" / f"part-{part}.jsonl").write_text("\n".join(lines) + "\n")
    native = run(tmp_path, "native")
    wasm = run(tmp_path, "wasm")
    jsonl, lossless = native
    assert len(lossless) == 15  # the odd lines of three files of ten
    assert lossless[0] == (b'{"ID": 0} @part-0.jsonl:1', {"file": "part-0.jsonl", "line": "1"}, 0)
    assert lossless[-1][1] == {"file": "part-2.jsonl", "line": "9"}
    assert jsonl.splitlines() == [value for value, _, _ in lossless]
    assert wasm == native
