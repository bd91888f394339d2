"""Building records fast from columns the runtime already trusts (the guest's batch decoder)."""

from __future__ import annotations

import pickle
from collections import deque
from collections.abc import Callable, Iterable, Sized
from itertools import repeat, starmap
from types import MappingProxyType
from typing import Any

from dataflare._record import (
    _EMPTY_METADATA,
    Record,
    _set_key,
    _set_line,
    _set_metadata,
    _set_offset,
    _set_parsed,
    _set_timestamp,
    _set_value,
)  # the slot setters Record.evolve uses too: one definition, in _record
from dataflare.runtime import _line_metadata  # noqa: F401 - Record.metadata reads lines

from ._host_parses import HostParses

__all__ = ["build_trusted_records"]

# A pickle (protocol 2, opcodes written by hand) that makes bare Records: GLOBAL
# Record, memoized and popped, then per record BINGET 0, EMPTY_TUPLE, NEWOBJ,
# all in one LIST. NEWOBJ calls Record's tp_new from C, which costs less per
# record than map(Record.__new__, ...) through its Python-facing wrapper, in
# the WASM guest and natively.
# Only this module's own bytes are ever unpickled here.
_BARE_RECORDS_HEAD = (
    b"\x80\x02c" + f"{Record.__module__}\n{Record.__qualname__}\n".encode() + b"q\x000("
)
_BARE_RECORD = b"h\x00)\x81"
_BARE_RECORDS_TAIL = b"l."


def _bare_records(count: int) -> list[Record]:
    """``count`` new Records with no field set (each must then be set, slot by slot)."""
    records: list[Record] = pickle.loads(
        b"".join((_BARE_RECORDS_HEAD, _BARE_RECORD * count, _BARE_RECORDS_TAIL))
    )
    return records


def build_trusted_records(
    values: list[bytes],
    keys: list[bytes | None] | None,
    timestamps: list[int | None] | None,
    metadata: list[dict[str, str]] | None,
    offsets: list[int],
    parsed: list[Any] | HostParses | None = None,
    file_lines: tuple[list[str], list[int]] | None = None,
) -> list[Record]:
    """Records from columns whose types are already right, skipping ``__init__``.

    Only for data this process wrote or fully trusts (the host's batch, as the
    guest reads it): it skips the checked constructor's work, which matters
    at 10k records per batch inside the slower WASM guest. ``parsed`` holds each
    value as ``loads_json`` parsed it (a JSONL source's check), or is the host's
    parsed column: the records' first :meth:`Record.json` call returns the
    value's parse instead of parsing again.
    ``file_lines`` (file names, line numbers), given with ``metadata`` None,
    stands for each record's ``{"file": name, "line": str(number)}``, made
    only if read.
    """
    count = len(values)
    # Whole columns at a time: the slot setters are called from C, with no
    # Python-level loop per record (a quarter faster than one, measured).
    records = _bare_records(count)
    _set_column(_set_value, records, values)
    _set_column(_set_key, records, repeat(None, count) if keys is None else keys)
    _set_column(_set_timestamp, records, repeat(None, count) if timestamps is None else timestamps)
    if file_lines is not None:
        files, lines = file_lines
        # The metadata slot holds the file's name until the mapping is read.
        _set_column(_set_metadata, records, files)
        _set_column(_set_line, records, lines)
    elif metadata is None:
        _set_column(_set_metadata, records, repeat(_EMPTY_METADATA, count))
    else:
        # Every record of a file source has metadata: then one C-level map.
        frozen = (
            list(map(MappingProxyType, metadata))
            if all(metadata)
            else [MappingProxyType(m) if m else _EMPTY_METADATA for m in metadata]
        )
        _set_column(_set_metadata, records, frozen)
    _set_column(_set_offset, records, offsets)
    if isinstance(parsed, HostParses):
        # (column, index) per record, made in C: the column unmarshals on first use.
        _set_column(_set_parsed, records, zip(repeat(parsed), range(count)))
    elif parsed is not None:
        _set_column(_set_parsed, records, parsed)
    return records


def _set_column(
    setter: Callable[[Record, Any], None], records: list[Record], column: Iterable[Any]
) -> None:
    if isinstance(column, Sized) and len(column) != len(records):
        raise ValueError(f"a column holds {len(column)} items for {len(records)} records")
    # starmap over zip, not map: a slot setter takes its arguments as a tuple, which
    # map builds anew per call while zip hands over the same one again (a fifth
    # less per record in the WASM guest, two fifths natively). A column without a
    # length is an endless repeat(), so zip stops with the records.
    deque(starmap(setter, zip(records, column, strict=False)), maxlen=0)
