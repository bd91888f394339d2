"""What a file source's and a file sink's ``connection:`` say, and the formats they name."""

from __future__ import annotations

import struct
from typing import Literal

import attrs

__all__ = [
    "FRAME_HEADER",
    "FileSinkConfig",
    "FileSourceConfig",
    "Format",
    "SinkMode",
    "infer_format",
]

Format = Literal["jsonl", "csv", "lines", "records"]
SinkMode = Literal["append", "overwrite"]
FRAME_HEADER = struct.Struct(">I")
"""The length prefix of each batch (frame) in a ``records`` file."""


def infer_format(path: str) -> Format:
    """The format a file's suffix implies (``lines`` when none does)."""
    lowered = path.lower()
    if lowered.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith((".records", ".msgpack")):
        return "records"
    return "lines"


@attrs.frozen
class FileSourceConfig:
    """``connection:`` of a file source.

    ``path`` is a file, a directory (its files are read in name order) or a glob.
    ``format`` defaults from the suffix (.jsonl/.ndjson/.json, .csv,
    .records/.msgpack, else lines). ``records`` is the lossless format a file sink
    writes: length-prefixed msgpack batches keeping keys, timestamps and metadata.
    For JSONL and CSV, ``key_field`` and ``timestamp_field`` name the fields that
    become the record's key and timestamp (ms). JSONL lines are checked to be
    JSON unless ``validate`` is false. Blank lines are skipped. Files are UTF-8;
    a byte-order mark at the start of a CSV or JSONL file is dropped. A CSV row
    with fewer or more fields than the header is an error naming file and line.
    """

    path: str
    format: Format | None = None
    key_field: str | None = None
    timestamp_field: str | None = None
    validate: bool = True
    base_dir: str = "."


@attrs.frozen
class FileSinkConfig:
    """``connection:`` of a file sink: writes to ``path`` (created with its directory).

    JSONL and lines write each value on its own line (a value holding a newline
    is an error: it would split the record). CSV writes a JSON-object value as a
    row under ``fields`` (default: the first record's keys). ``records`` writes
    each batch as a length-prefixed msgpack frame
    (``dataflare_host.connectors.encode_batch``): keys,
    timestamps and metadata survive, and a file source reads them back.

    ``mode`` says what happens to a file already there when a run starts
    fresh (no checkpoint: the first run, or ``dataflare run --reset``):
    ``append`` (the default, and the only behaviour before ``mode`` existed)
    keeps it and writes after it; ``overwrite`` empties it first. A run that
    resumes from a checkpoint appends in both modes: what the file holds is
    output the checkpoint covers, and emptying it would lose it for good.
    """

    path: str
    format: Format | None = None
    fields: list[str] | None = None
    fsync: bool = True
    mode: SinkMode = "append"
    base_dir: str = "."
