"""Partition positions: a source's one-process position split per partition and joined back.

A checkpoint taken by workers reading a glob's files (each file's position, the files
read to their end) must resume in one process when one position can say the same
(the files read form a prefix), and must be refused in one line when it cannot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataflare import PluginError
from dataflare_host.connectors import KafkaSource, KafkaSourceConfig, PartitionPositions
from dataflare_host.connectors._file_partitions import join_file_positions, split_file_position

FILES = [Path(f"/data/part-{i}.jsonl") for i in range(5)]


def at(name: str, line: int) -> dict[str, Any]:
    return {"file": name, "line": line, "offset": line, "path": "/data/part-*.jsonl"}


@given(st.integers(0, 4), st.integers(0, 10_000))
def test_a_one_process_position_splits_and_joins_back(index: int, line: int) -> None:
    position = at(FILES[index].name, line)
    split = split_file_position(FILES, position)
    assert split.ended == {p.name for p in FILES[:index]}
    assert split.at[FILES[index].name] == position
    assert all(split.at[p.name] is None for p in FILES if p != FILES[index])
    assert join_file_positions(FILES, split) == position


def test_no_position_is_every_file_from_its_start() -> None:
    split = split_file_position(FILES, None)
    assert split == PartitionPositions(dict.fromkeys(p.name for p in FILES))
    assert join_file_positions(FILES, split) is None


@given(st.integers(0, 5), st.data())
def test_workers_positions_join_when_the_files_read_form_a_prefix(ended: int, data: Any) -> None:
    """Files 0..ended-1 read to their end, the next one partly or not at all: one position
    (the partly read file's, else the last ended file's end) says the same."""
    names = [p.name for p in FILES]
    finals = {n: at(n, 100 + i) for i, n in enumerate(names[:ended])}
    partly = ended < len(names) and data.draw(st.booleans())
    positions: dict[str, Any] = dict.fromkeys(names)
    positions.update(finals)
    if partly:
        positions[names[ended]] = at(names[ended], 7)
    joined = join_file_positions(FILES, PartitionPositions(positions, frozenset(finals)))
    if partly:
        assert joined == at(names[ended], 7)
    elif ended:
        assert joined == finals[names[ended - 1]]
    else:
        assert joined is None


@given(st.integers(0, 3), st.integers(1, 4), st.booleans())
def test_a_later_file_read_while_an_earlier_one_was_not_finished_is_refused(
    first: int, gap: int, later_ended: bool
) -> None:
    names = [p.name for p in FILES]
    later = min(first + gap, len(names) - 1)
    if later == first:
        later = first + 1
    positions: dict[str, Any] = dict.fromkeys(names)
    positions.update({n: at(n, 100) for n in names[:first]})
    positions[names[later]] = at(names[later], 3)
    ended = frozenset(names[:first]) | ({names[later]} if later_ended else set())
    with pytest.raises(PluginError) as caught:
        join_file_positions(FILES, PartitionPositions(positions, ended))
    message = str(caught.value)
    assert "read in parallel by workers" in message
    assert names[later] in message
    assert f"while {names[first]} was not finished" in message
    assert "--reset" in message


def test_the_checkpoints_form_round_trips_and_other_positions_are_not_it() -> None:
    positions = PartitionPositions({"a": at("a", 1), "b": None}, frozenset({"a"}))
    assert PartitionPositions.from_json(positions.to_json()) == positions
    assert positions.to_json() == {"partitions": {"a": at("a", 1), "b": None}, "ended": ["a"]}
    for other in (
        None,
        at("a", 1),
        {"partitions": {}},
        {"partitions": [], "ended": []},
        {"topic": "t", "offsets": {"0": 1}},
        "partitions",
    ):
        assert PartitionPositions.from_json(other) is None


def test_a_topics_offsets_split_per_partition_and_join_back() -> None:
    source = KafkaSource(KafkaSourceConfig(bootstrap_servers="localhost:1", topic="t"), {})
    position = {"topic": "t", "offsets": {"0": 5, "1": 0, "3": 12}}
    split = source.split_position(position)
    assert split.at == {
        "0": {"topic": "t", "offsets": {"0": 5}},
        "1": {"topic": "t", "offsets": {"1": 0}},
        "3": {"topic": "t", "offsets": {"3": 12}},
    }
    assert source.join_positions(split) == position
    # A worker's partitions, some never checkpointed: only theirs are in its position.
    assert source.join_positions(PartitionPositions({"0": split.at["0"], "2": None})) == {
        "topic": "t",
        "offsets": {"0": 5},
    }
    with pytest.raises(PluginError, match="offsets of topic 'other'"):
        source.split_position({"topic": "other", "offsets": {"0": 1}})


def test_a_file_source_restricted_to_its_files_reads_them_alone_and_a_gone_one_fails(
    tmp_path: Path,
) -> None:
    """A worker's file removed after the driver listed it is an error naming it, as in one
    process when it comes to open it (read as empty, its records were lost in silence)."""
    from dataflare import PluginIOError
    from dataflare_host.connectors import FileSource, FileSourceConfig

    for part in range(3):
        (tmp_path / f"part-{part}.jsonl").write_text(f'{{"p": {part}}}\n{{"p": {part}}}\n')
    config = FileSourceConfig(path="part-*.jsonl", base_dir=str(tmp_path))
    source = FileSource(config, {})
    assert source.partitions() == ["part-0.jsonl", "part-1.jsonl", "part-2.jsonl"]
    source.restrict(["part-2.jsonl", "part-0.jsonl"])
    source.connect(None)
    values = []
    while (batch := source.read(10, 0.0)) is not None:
        values += [r.value for r in batch.records]
    source.close()
    assert values == [b'{"p": 0}'] * 2 + [b'{"p": 2}'] * 2  # name order, part-1 left out
    gone = FileSource(config, {})
    gone.restrict(["part-1.jsonl"])
    (tmp_path / "part-1.jsonl").unlink()  # removed after the driver listed it
    with pytest.raises(PluginIOError, match=r"^file source: cannot open .*/part-1\.jsonl: No"):
        gone.connect(None)
    gone.close()


def test_a_file_source_names_what_matches_and_refuses_a_wildcard_in_a_folder(
    tmp_path: Path,
) -> None:
    """Only a file's name is a pattern (a partition is a file's name: folders matched by a
    wildcard could hold two of one name): a wildcard in a folder's name is one line
    saying so, not 'no file matches'; a folder literally named with a bracket still reads."""
    from dataflare import ConfigurationError
    from dataflare_host.connectors import FileSource, FileSourceConfig

    for folder in ("a", "b", "c[1]"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "part.jsonl").write_text('{"x": 1}\n')
    with pytest.raises(ConfigurationError, match=r"only the file's name may hold wildcards"):
        FileSource(FileSourceConfig(path="*/part.jsonl", base_dir=str(tmp_path)), {})
    with pytest.raises(ConfigurationError, match=r"^file source: no file matches .*/a/x\*$"):
        FileSource(FileSourceConfig(path="a/x*", base_dir=str(tmp_path)), {})
    literal = FileSource(FileSourceConfig(path="c[1]/*.jsonl", base_dir=str(tmp_path)), {})
    assert literal.partitions() == ["part.jsonl"]
