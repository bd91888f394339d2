"""Hypothesis strategies for records and batches, for plugin authors' property tests."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from hypothesis import strategies as st

from dataflare import Record

__all__ = [
    "batches",
    "byte_values",
    "json_values",
    "keys",
    "metadata",
    "records",
    "text_values",
    "timestamps",
]

_MAX_MS = 4_102_444_800_000  # 2100-01-01: far enough, and inside every int64 field


def byte_values(max_size: int = 64) -> st.SearchStrategy[bytes]:
    """Arbitrary bytes, including NUL, non-UTF-8 and high bytes."""
    return st.binary(max_size=max_size)


def text_values(
    max_size: int = 64, alphabet: st.SearchStrategy[str] | None = None
) -> st.SearchStrategy[bytes]:
    """UTF-8 encoded text (any Unicode but surrogates, unless ``alphabet`` narrows it)."""
    chars = alphabet if alphabet is not None else st.characters(exclude_categories=["Cs"])
    return st.text(chars, max_size=max_size).map(str.encode)


def _json_scalars() -> st.SearchStrategy[Any]:
    return (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**53), max_value=2**53)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=16)
    )


def json_values(
    fields: Mapping[str, st.SearchStrategy[Any]] | None = None,
    *,
    optional: Mapping[str, st.SearchStrategy[Any]] | None = None,
) -> st.SearchStrategy[bytes]:
    """JSON objects as compact UTF-8 bytes.

    ``fields`` are always present with values from their strategies, ``optional``
    ones sometimes; with neither, objects of arbitrary small JSON values.

    >>> strategy = json_values({"status": st.sampled_from(["active", "paused"])})
    """
    if fields is None and optional is None:
        values = st.recursive(
            _json_scalars(),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=8), inner, max_size=3)
            ),
            max_leaves=8,
        )
        documents = st.dictionaries(st.text(max_size=8), values, max_size=5)
    else:
        documents = st.fixed_dictionaries(dict(fields or {}), optional=dict(optional or {}))
    return documents.map(
        lambda doc: json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    )


def keys(max_size: int = 16) -> st.SearchStrategy[bytes | None]:
    """No key, or a short bytes key."""
    return st.none() | st.binary(min_size=1, max_size=max_size)


def timestamps(min_ms: int = 0, max_ms: int = _MAX_MS) -> st.SearchStrategy[int | None]:
    """No timestamp, or milliseconds since the epoch."""
    return st.none() | st.integers(min_value=min_ms, max_value=max_ms)


def metadata(max_size: int = 3) -> st.SearchStrategy[dict[str, str]]:
    """Small str -> str headers."""
    return st.dictionaries(st.text(max_size=8), st.text(max_size=16), max_size=max_size)


_keys, _timestamps, _metadata = keys, timestamps, metadata  # parameters below shadow them


def records(
    values: st.SearchStrategy[bytes] | None = None,
    *,
    keys: st.SearchStrategy[bytes | None] | None = None,
    timestamps: st.SearchStrategy[int | None] | None = None,
    metadata: st.SearchStrategy[dict[str, str]] | None = None,
    offset: int = 0,
) -> st.SearchStrategy[Record]:
    """Single records; each part defaults to the module's strategy of the same name."""
    return st.builds(
        Record,
        values if values is not None else byte_values(),
        keys if keys is not None else _keys(),
        timestamps if timestamps is not None else _timestamps(),
        metadata if metadata is not None else _metadata(),
        st.just(offset),
    )


_records = records


def batches(
    values: st.SearchStrategy[bytes] | None = None,
    *,
    min_size: int = 0,
    max_size: int = 30,
    records: st.SearchStrategy[Record] | None = None,
    first_offset: int = 0,
) -> st.SearchStrategy[list[Record]]:
    """Batches as the host sends them: records at increasing offsets from ``first_offset``.

    Give ``values`` for records with those values and no key, timestamp or
    metadata, or ``records`` for full control; the default varies everything.
    """
    if records is None:
        records = st.builds(Record, values) if values is not None else _records()
    return st.lists(records, min_size=min_size, max_size=max_size).map(
        lambda items: [r.evolve(offset=first_offset + i) for i, r in enumerate(items)]
    )
