"""Hypothesis strategies shared by the tests: records, their fields and batches of them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from hypothesis import strategies as st

from dataflare import Record

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)

bytes_values = st.binary(max_size=40)
"""Arbitrary bytes, including invalid UTF-8."""

text_values = st.text(max_size=30).map(str.encode)
"""UTF-8 encoded text."""

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
json_documents = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=10,
)
"""Any JSON document (no NaN or infinities, which JSON cannot spell)."""

json_objects = st.dictionaries(st.text(max_size=8), json_documents, max_size=5)


def to_json(document: Any) -> bytes:
    """``document`` as compact UTF-8 JSON, the way the examples write it."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


json_values = json_objects.map(to_json)
"""A JSON object, encoded as a record value."""

offsets = st.integers(min_value=0, max_value=2**40)
keys = st.none() | st.binary(max_size=10)
timestamps = st.none() | st.integers(min_value=0, max_value=2**53)
metadata = st.dictionaries(st.text(max_size=6), st.text(max_size=12), max_size=3)


@st.composite
def records(
    draw: st.DrawFn,
    values: st.SearchStrategy[bytes] = bytes_values,
    offsets: st.SearchStrategy[int] = offsets,
) -> Record:
    """A Record with every field drawn (``values`` and ``offsets`` can be narrowed)."""
    return Record(
        draw(values),
        key=draw(keys),
        timestamp=draw(timestamps),
        metadata=draw(metadata),
        offset=draw(offsets),
    )


@st.composite
def batches(
    draw: st.DrawFn,
    values: st.SearchStrategy[bytes] = bytes_values,
    min_size: int = 0,
    max_size: int = 12,
) -> list[Record]:
    """A batch of records with strictly increasing (not necessarily adjacent) offsets."""
    count = draw(st.integers(min_value=min_size, max_value=max_size))
    offset = draw(offsets)
    batch = []
    for _ in range(count):
        batch.append(draw(records(values=values, offsets=st.just(offset))))
        offset += draw(st.integers(min_value=1, max_value=5))
    return batch


def as_dict(record: Record) -> Mapping[str, Any]:
    """Every field of ``record``, for comparisons that explain themselves on failure."""
    return {
        "value": record.value,
        "key": record.key,
        "timestamp": record.timestamp,
        "metadata": dict(record.metadata),
        "offset": record.offset,
    }
