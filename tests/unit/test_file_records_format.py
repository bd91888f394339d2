"""The lossless ``records`` file format: msgpack batches written and read back."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.file_sources import read_all, read_then_resume
from support.records import any_batches

from dataflare import Record, SerializationError
from dataflare_host.connectors import FileSink, FileSinkConfig


def write(path: Path, groups: list[list[Record]]) -> None:
    sink = FileSink(FileSinkConfig(str(path), format="records"), {})
    sink.connect()
    for group in groups:
        sink.write(group)
    sink.close()


@settings(max_examples=40, deadline=None)
@given(groups=st.lists(any_batches(), max_size=4))
def test_records_keep_key_timestamp_and_metadata_across_files(
    tmp_path_factory: pytest.TempPathFactory, groups: list[list[Record]]
) -> None:
    """Whatever is written comes back in order, every field intact, offsets renumbered."""
    path = tmp_path_factory.mktemp("records") / "out.records"
    write(path, groups)
    flat = [record for group in groups for record in group]
    assert read_all(path) == [r.evolve(offset=i) for i, r in enumerate(flat)]


def test_resume_from_a_position_skips_exactly_what_was_read(tmp_path: Path) -> None:
    """A source reconnected at a batch's position continues with the next record."""
    path = tmp_path / "out.records"
    records = [Record(str(i).encode(), key=b"k", timestamp=i) for i in range(10)]
    write(path, [records[:4], records[4:]])
    _, rest = read_then_resume(path, 6)
    assert [r.value for r in rest.records] == [str(i).encode() for i in range(6, 10)]
    assert [r.offset for r in rest.records] == list(range(6, 10))


def test_a_truncated_frame_is_reported_with_its_byte_position(tmp_path: Path) -> None:
    """A frame cut short (a writer killed mid-write) is an error naming the file and byte."""
    path = tmp_path / "out.records"
    write(path, [[Record(b"a")], [Record(b"b")]])
    data = path.read_bytes()
    path.write_bytes(data[:-3])
    with pytest.raises(SerializationError, match=r"out\.records: truncated record frame at byte"):
        read_all(path)
