"""The testing kit's strategies draw what they promise: offsets, gaps, keys and JSON."""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st

from dataflare import ConfigurationError, Record
from dataflare_host.testing import (
    batches,
    json_documents,
    json_scalars,
    json_values,
    keys,
    offsets,
    records,
)


@given(batches(first_offset=7))
def test_batches_default_to_adjacent_offsets_from_the_first(batch: list[Record]) -> None:
    assert [r.offset for r in batch] == list(range(7, 7 + len(batch)))


@given(
    st.data(),
    st.integers(min_value=1, max_value=4),
    st.integers(min_value=0, max_value=3),
)
def test_batches_with_gaps_step_by_what_the_gaps_draw(
    data: st.DataObject, widest: int, low: int
) -> None:
    batch = data.draw(
        batches(
            first_offset=offsets(min_offset=low, max_offset=low + 10),
            offset_gaps=st.integers(min_value=1, max_value=widest),
            min_size=1,
        )
    )
    assert low <= batch[0].offset <= low + 10
    steps = [b.offset - a.offset for a, b in itertools.pairwise(batch)]
    assert all(1 <= step <= widest for step in steps)


_FEW = settings(max_examples=500, database=None)  # find stops at the first hit


def test_batches_with_gaps_find_a_gap_and_a_drawn_first_offset() -> None:
    gapped = batches(
        st.just(b""), first_offset=offsets(max_offset=100), offset_gaps=st.integers(1, 5),
        min_size=2,
    )
    found = find(
        gapped, lambda b: b[0].offset > 0 and b[1].offset - b[0].offset > 1, settings=_FEW
    )
    assert found[1].offset - found[0].offset == 2  # shrunk to the smallest gap
    assert found[0].offset == 1


def test_a_gap_below_one_is_refused_with_what_was_drawn() -> None:
    with pytest.raises(ConfigurationError, match=r"\) drew 0: offsets must increase"):
        find(batches(st.just(b""), offset_gaps=st.just(0), min_size=2), lambda _: True)


@given(records(offset=offsets(min_offset=-(2**63))))
def test_records_draw_their_offset_from_a_strategy(record: Record) -> None:
    assert -(2**63) <= record.offset <= 2**63 - 1


def test_offsets_reach_both_ends_of_int64() -> None:
    assert find(offsets(min_offset=-(2**63)), lambda o: o < -(2**62), settings=_FEW) < -(2**62)
    assert find(offsets(), lambda o: o > 2**62, settings=_FEW) > 2**62


@given(offsets())
def test_offsets_start_at_zero_by_default(offset: int) -> None:
    assert 0 <= offset <= 2**63 - 1


def test_keys_hold_the_empty_key_when_asked() -> None:
    assert find(keys(min_size=0), lambda k: k == b"", settings=_FEW) == b""


@given(keys())
def test_keys_are_none_or_not_empty_by_default(key: bytes | None) -> None:
    assert key != b""


def _finite(document: Any) -> bool:
    if isinstance(document, float):
        return math.isfinite(document)
    if isinstance(document, list):
        return all(_finite(item) for item in document)
    if isinstance(document, dict):
        return all(isinstance(k, str) and _finite(v) for k, v in document.items())
    return document is None or isinstance(document, bool | int | str)


@given(json_documents())
def test_json_documents_are_json_that_round_trips(document: Any) -> None:
    assert _finite(document)
    assert json.loads(json.dumps(document)) == document


@given(json_scalars())
def test_json_scalars_are_scalars_a_float_holds(scalar: Any) -> None:
    assert not isinstance(scalar, list | dict)
    assert _finite(scalar)
    if isinstance(scalar, int) and not isinstance(scalar, bool):
        assert abs(scalar) <= 2**53


def test_json_documents_nest_lists_in_objects() -> None:
    nested = find(
        json_documents(),
        lambda d: isinstance(d, dict) and any(isinstance(v, list) for v in d.values()),
        settings=_FEW,
    )
    assert nested == {"": []}


@given(json_values())
def test_json_values_are_objects_in_compact_utf8(value: bytes) -> None:
    document = json.loads(value)
    assert isinstance(document, dict)
    assert value == json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
