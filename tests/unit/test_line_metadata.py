"""A file source's records keep their line, not a mapping, until the metadata is read:
every reader sees exactly what the eagerly built mapping gave (the fast path equals
the slow one)."""

from __future__ import annotations

import copy
from types import MappingProxyType

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataflare import Record
from dataflare._record import _get_metadata
from dataflare.runtime._trusted_records import build_trusted_records
from dataflare.runtime._wire import encode_request
from dataflare_host.connectors._line_batches import LineSpan
from dataflare_host.pipeline.engines._wire import frame_records, unframe_records

names = st.text(min_size=1, max_size=20)
lines = st.lists(
    st.tuples(st.binary(max_size=12), st.integers(min_value=1, max_value=10**12)),
    min_size=1,
    max_size=8,
)


def _both(name: str, rows: list[tuple[bytes, int]]) -> tuple[list[Record], list[Record]]:
    values = [value for value, _ in rows]
    numbers = [number for _, number in rows]
    offsets = list(range(len(rows)))
    lazy = build_trusted_records(
        values, None, None, None, offsets, None, ([name] * len(rows), numbers)
    )
    eager = [
        Record(value, metadata={"file": name, "line": str(number)}, offset=offset)
        for value, number, offset in zip(values, numbers, offsets, strict=True)
    ]
    return lazy, eager


@given(names, lines)
def test_a_lazy_record_reads_as_the_eager_one(name: str, rows: list[tuple[bytes, int]]) -> None:
    lazy, eager = _both(name, rows)
    for made, built in zip(lazy, eager, strict=True):
        assert _get_metadata(made) == name  # unmade: the slot holds the file's name
        assert made == built  # first: equality itself makes the mapping
        assert hash(made) == hash(built)
        assert repr(made) == repr(built)
        assert type(made.metadata) is MappingProxyType
        assert list(made.metadata.items()) == list(built.metadata.items())
        assert made.metadata is made.metadata  # made once, then kept
        with pytest.raises(TypeError):
            made.metadata["file"] = "other"  # type: ignore[index]


@given(names, lines)
def test_copies_keep_the_line_unmade_and_read_the_same(
    name: str, rows: list[tuple[bytes, int]]
) -> None:
    lazy, eager = _both(name, rows)
    for made, built in zip(lazy, eager, strict=True):
        mapped = made.evolve(value=b"new")
        assert _get_metadata(mapped) == name  # nothing made for the map's output either
        assert mapped == built.evolve(value=b"new")
        assert made.evolve(key="k", offset=9) == built.evolve(key="k", offset=9)
        assert attrs.evolve(made, timestamp=5) == attrs.evolve(built, timestamp=5)
        assert copy.copy(made) == built
        assert made.evolve(metadata={"a": "b"}).metadata == {"a": "b"}


@given(names, lines)
def test_the_wires_carry_the_same_records(name: str, rows: list[tuple[bytes, int]]) -> None:
    """Unmade lines cross as the line column (flag bit 3), made mappings as the metadata
    column (bit 2): both decode to the same records."""
    lazy, eager = _both(name, rows)
    for frame in (encode_request, frame_records):  # the WASM guest's batch, a worker's
        lines, mappings = frame(lazy), frame(_both(name, rows)[1])
        assert (lines[8] & 12, mappings[8] & 12) == (8, 4)
        assert unframe_records(lines) == unframe_records(mappings) == eager


@given(names, st.integers(min_value=1, max_value=10**6), st.integers(0, 10**6))
def test_a_deferred_span_gives_the_source_s_metadata(name: str, first: int, offset: int) -> None:
    span = LineSpan(f"/data/{name}", name, first, offset, b'{"a":1}\n{"b":2}', validate=True)
    made = span.records()
    assert [r.metadata for r in made] == [
        {"file": name, "line": str(first)},
        {"file": name, "line": str(first + 1)},
    ]
    assert [r.offset for r in made] == [offset, offset + 1]
    assert made[1].json() == {"b": 2}
