"""Reading what a file sink wrote in its lossless ``records`` format."""

from __future__ import annotations

from pathlib import Path

from dataflare import Record


def read_records(path: Path) -> list[Record]:
    """The file sink's ``records`` format: frames of a 4-byte big-endian length + a batch."""
    from dataflare_host.connectors import decode_batch

    data, at, records = path.read_bytes(), 0, []
    while at < len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        records.extend(decode_batch(data[at + 4 : at + 4 + size]))
        at += 4 + size
    return records
