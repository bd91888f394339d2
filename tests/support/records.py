"""Records for the suite's properties: the testing kit's strategies at their widest, and
records turned into dicts for comparisons that explain themselves on failure.

The suite draws from ``dataflare_host.testing`` (what plugin authors get), widened where
the host must hold more than a plugin usually sees: empty keys, timestamps and offsets
anywhere in int64, batches starting anywhere with gaps between offsets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hypothesis import strategies as st

from dataflare import Record
from dataflare.runtime import RecordBatch, records_of
from dataflare_host.testing import batches, keys, offsets, records, timestamps

INT64_MIN = -(2**63)

any_keys = keys(10, min_size=0)
"""No key, the empty key or a short one."""

any_timestamps = timestamps(min_ms=INT64_MIN, max_ms=2**63 - 1)
"""No timestamp, or any the contract's int64 holds (negative ones too)."""

any_offsets = offsets(min_offset=INT64_MIN)
"""Any offset the contract's int64 holds (negative ones too)."""

_first_offsets = offsets(max_offset=2**40)  # far from the int64 end: the gaps add up


_timestamps = timestamps(max_ms=2**53)


def any_records(
    values: st.SearchStrategy[bytes] | None = None,
    *,
    keys: st.SearchStrategy[bytes | None] = any_keys,
    timestamps: st.SearchStrategy[int | None] = _timestamps,
    offset: st.SearchStrategy[int] = _first_offsets,
) -> st.SearchStrategy[Record]:
    """Records with every field drawn (each part can be narrowed); by default the empty
    key is in and timestamps go up to ``2**53``."""
    return records(values, keys=keys, timestamps=timestamps, offset=offset)


def any_batches(
    values: st.SearchStrategy[bytes] | None = None,
    min_size: int = 0,
    max_size: int = 12,
    *,
    keys: st.SearchStrategy[bytes | None] = any_keys,
    timestamps: st.SearchStrategy[int | None] = _timestamps,
) -> st.SearchStrategy[list[Record]]:
    """Batches of :func:`any_records` at strictly increasing, not necessarily adjacent offsets
    (gaps of 1 to 5, as a filter earlier in a chain leaves them) from a random first one."""
    return batches(
        records=any_records(values, keys=keys, timestamps=timestamps),
        min_size=min_size,
        max_size=max_size,
        first_offset=_first_offsets,
        offset_gaps=st.integers(min_value=1, max_value=5),
    )


def as_dict(record: Record) -> Mapping[str, Any]:
    """Every field of ``record``, for comparisons that explain themselves on failure."""
    return {
        "value": record.value,
        "key": record.key,
        "timestamp": record.timestamp,
        "metadata": dict(record.metadata),
        "offset": record.offset,
    }


def holding_parses(values: list[bytes], parses: list[Any]) -> list[Record]:
    """Records as a JSONL source makes them (offsets 0, 1, ...): each holding ``parses[i]``
    for its first ``json()``, which need not be the value's own parse."""
    batch = RecordBatch(list(range(len(values))), values, None, None, None, parsed=parses)
    return records_of(batch, batch.positions)
