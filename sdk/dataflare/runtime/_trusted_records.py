"""Building records fast from columns the runtime already trusts (the guest's batch decoder)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from dataflare._record import _EMPTY_METADATA, Record

__all__ = ["build_trusted_records"]

_new_record = Record.__new__
_set_value = Record.__dict__["value"].__set__
_set_key = Record.__dict__["key"].__set__
_set_timestamp = Record.__dict__["timestamp"].__set__
_set_metadata = Record.__dict__["metadata"].__set__
_set_offset = Record.__dict__["offset"].__set__


def build_trusted_records(
    values: list[bytes],
    keys: list[bytes | None] | None,
    timestamps: list[int | None] | None,
    metadata: list[dict[str, str]] | None,
    offsets: list[int],
) -> list[Record]:
    """Records from columns whose types are already right, skipping ``__init__``.

    Only for data this process wrote or fully trusts (the host's batch, as the
    guest reads it): it is 3x faster than the checked constructor, which matters
    at 10k records per batch inside the slower WASM guest.
    """
    out: list[Record] = []
    append = out.append
    new, set_value, set_key, set_timestamp, set_metadata, set_offset = (
        _new_record,
        _set_value,
        _set_key,
        _set_timestamp,
        _set_metadata,
        _set_offset,
    )
    if keys is None and timestamps is None and metadata is None:
        # The common shape (plain lines, JSON documents): one tight loop.
        empty = _EMPTY_METADATA
        for value, offset in zip(values, offsets, strict=True):
            record = new(Record)
            set_value(record, value)
            set_key(record, None)
            set_timestamp(record, None)
            set_metadata(record, empty)
            set_offset(record, offset)
            append(record)
        return out
    count = len(values)
    keys = keys if keys is not None else [None] * count
    timestamps = timestamps if timestamps is not None else [None] * count
    frozen: list[Mapping[str, str]]
    if metadata is None:
        frozen = [_EMPTY_METADATA] * count
    else:
        frozen = [MappingProxyType(m) if m else _EMPTY_METADATA for m in metadata]
    for value, key, timestamp, meta, offset in zip(
        values, keys, timestamps, frozen, offsets, strict=True
    ):
        record = new(Record)
        set_value(record, value)
        set_key(record, key)
        set_timestamp(record, timestamp)
        set_metadata(record, meta)
        set_offset(record, offset)
        append(record)
    return out
