"""A file source's record metadata, made on first read: ``Record.metadata`` reads
through :class:`LineMetadata` once this module is imported (by the trusted
record builder, the only maker of records whose metadata is a line)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from dataflare._record import Record, _get_line, _get_metadata, _set_metadata

__all__ = ["LineMetadata"]


class LineMetadata:
    """``Record.metadata``: the slot, or for a record of a file source's line whose
    slot holds the file's name (a ``str``, never a mapping), ``{"file": ..., "line": ...}``
    made (and kept) on first read.

    Every reader (equality, repr, attrs.evolve, the wire encoders, a plugin)
    goes through here, so each sees the mapping the source used to build.
    """

    __slots__ = ()

    def __get__(self, record: Record | None, owner: type | None = None) -> Any:
        if record is None:
            return self
        metadata = _get_metadata(record)
        if type(metadata) is not str:
            return metadata
        # Two threads may both make it: equal mappings, either one kept.
        metadata = MappingProxyType({"file": metadata, "line": str(_get_line(record))})
        _set_metadata(record, metadata)
        return metadata

    def __set__(self, record: Record, metadata: Mapping[str, str]) -> None:
        _set_metadata(record, metadata)


if not isinstance(Record.__dict__["metadata"], LineMetadata):
    # The slot's own accessors stay in _record (_get_metadata, _set_metadata).
    type.__setattr__(Record, "metadata", LineMetadata())
