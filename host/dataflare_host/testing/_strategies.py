"""Hypothesis strategies for records and batches, for plugin authors' property tests."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from hypothesis import strategies as st

from dataflare import ConfigurationError, Record

__all__ = [
    "batches",
    "byte_values",
    "json_documents",
    "json_scalars",
    "json_values",
    "keys",
    "metadata",
    "offsets",
    "records",
    "text_values",
    "timestamps",
]

_MAX_MS = 4_102_444_800_000  # 2100-01-01: far enough, and inside every int64 field
_INT64_MAX = 2**63 - 1  # offsets and timestamps cross the contract as int64


def byte_values(max_size: int = 64) -> st.SearchStrategy[bytes]:
    """Arbitrary bytes, including NUL, non-UTF-8 and high bytes."""
    return st.binary(max_size=max_size)


def text_values(
    max_size: int = 64, alphabet: st.SearchStrategy[str] | None = None
) -> st.SearchStrategy[bytes]:
    """UTF-8 encoded text (any Unicode but surrogates, unless ``alphabet`` narrows it)."""
    chars = alphabet if alphabet is not None else st.characters(exclude_categories=["Cs"])
    return st.text(chars, max_size=max_size).map(str.encode)


def json_scalars() -> st.SearchStrategy[Any]:
    """JSON's scalars as Python values: None, booleans, integers a float holds exactly,
    finite floats and short text."""
    return (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**53), max_value=2**53)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=16)
    )


def json_documents(max_leaves: int = 10) -> st.SearchStrategy[Any]:
    """Any JSON document as Python values: a scalar, or lists and objects nesting them
    (no NaN or infinities, which JSON cannot spell)."""
    return st.recursive(
        json_scalars(),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=max_leaves,
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
        documents = st.dictionaries(st.text(max_size=8), json_documents(), max_size=5)
    else:
        documents = st.fixed_dictionaries(dict(fields or {}), optional=dict(optional or {}))
    return documents.map(
        lambda doc: json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    )


def keys(max_size: int = 16, *, min_size: int = 1) -> st.SearchStrategy[bytes | None]:
    """No key, or a short bytes key (``min_size=0`` lets the empty key, not None, in too)."""
    return st.none() | st.binary(min_size=min_size, max_size=max_size)


def timestamps(min_ms: int = 0, max_ms: int = _MAX_MS) -> st.SearchStrategy[int | None]:
    """No timestamp, or milliseconds since the epoch."""
    return st.none() | st.integers(min_value=min_ms, max_value=max_ms)


def offsets(min_offset: int = 0, max_offset: int = _INT64_MAX) -> st.SearchStrategy[int]:
    """Record offsets: whole numbers the contract's int64 field holds, from 0 unless
    ``min_offset`` (down to ``-2**63``) says otherwise."""
    return st.integers(min_value=min_offset, max_value=max_offset)


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
    offset: int | st.SearchStrategy[int] = 0,
) -> st.SearchStrategy[Record]:
    """Single records; each part defaults to the module's strategy of the same name.

    ``offset`` is one offset for every record, or a strategy (such as :func:`offsets`)
    to draw each record's.
    """
    return st.builds(
        Record,
        values if values is not None else byte_values(),
        keys if keys is not None else _keys(),
        timestamps if timestamps is not None else _timestamps(),
        metadata if metadata is not None else _metadata(),
        offset if isinstance(offset, st.SearchStrategy) else st.just(offset),
    )


_records = records


def batches(
    values: st.SearchStrategy[bytes] | None = None,
    *,
    min_size: int = 0,
    max_size: int = 30,
    records: st.SearchStrategy[Record] | None = None,
    first_offset: int | st.SearchStrategy[int] = 0,
    offset_gaps: st.SearchStrategy[int] | None = None,
) -> st.SearchStrategy[list[Record]]:
    """Batches as the host sends them: records at increasing offsets from ``first_offset``.

    Give ``values`` for records with those values and no key, timestamp or
    metadata, or ``records`` for full control; the default varies everything.
    ``first_offset`` is an offset or a strategy drawing one (:func:`offsets`
    bounded so the batch stays inside int64). Offsets are adjacent, as a source
    reads them, unless ``offset_gaps`` draws each step to the next record's offset
    (at least 1), as a filter earlier in a chain leaves them.

    >>> strategy = batches(first_offset=offsets(max_offset=2**40), offset_gaps=st.integers(1, 5))
    """
    if records is None:
        records = st.builds(Record, values) if values is not None else _records()
    firsts = first_offset if isinstance(first_offset, st.SearchStrategy) else st.just(first_offset)
    steps = offset_gaps if offset_gaps is not None else st.just(1)
    return st.tuples(
        firsts, st.lists(st.tuples(records, steps), min_size=min_size, max_size=max_size)
    ).map(_at_offsets)


def _at_offsets(drawn: tuple[int, list[tuple[Record, int]]]) -> list[Record]:
    offset, steps = drawn
    batch = []
    for record, step in steps:
        if step < 1:
            raise ConfigurationError(
                f"batches(offset_gaps=...) drew {step}: offsets must increase, so draw gaps of "
                "1 or more (st.integers(min_value=1, ...))"
            )
        batch.append(record.evolve(offset=offset))
        offset += step
    return batch
