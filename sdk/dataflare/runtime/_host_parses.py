"""The parsed column as records hold it: the host's JSON parses of a batch's values,
unmarshalled on the batch's first ``record.json()``.

Lazily, because a plugin that never reads JSON (a regex over the line) would
otherwise pay to unmarshal every value it never looks at. Each record holds
``(column, index)`` in the slot :meth:`~dataflare.Record.json` hands over first;
``json.loads`` never returns a tuple, so the two cannot be confused.

The guest's records hold the column the host sent; the host's records hold the
same column once it was sent (:func:`park_parses`), instead of the parses as
objects, which only a later ``json()`` on the host would read.
"""

from __future__ import annotations

import marshal
from collections import deque
from collections.abc import Sequence
from itertools import repeat, starmap
from operator import is_
from typing import Any

from dataflare._errors import SerializationError
from dataflare._record import Record, _set_parsed

__all__ = ["NO_PARSE", "HostParses", "has_parse", "park_parses", "parses_to_send"]

NO_PARSE: Any = ...
"""The parsed column's item for a record whose value the host holds no parse of
(``json.loads`` never returns ``Ellipsis``)."""

# marshal's list type code, with or without its "referenced" flag bit (0x80).
_LIST_CODES = (ord("["), ord("[") | 0x80)


class HostParses:
    """One batch's parsed column: ``marshal`` bytes of a list, one item per record.

    Only the host writes it (the guest trusts its host); the list's type and length
    are checked on arrival, its items when first used.
    """

    __slots__ = ("_blob", "_items", "_what")

    def __init__(self, blob: bytes, count: int, what: str) -> None:
        if len(blob) < 5 or blob[0] not in _LIST_CODES:
            raise SerializationError(f"{what}: the parsed column is not a marshalled list")
        if int.from_bytes(blob[1:5], "little") != count:
            raise SerializationError(f"{what}: the parsed column is not a list of {count} values")
        self._blob, self._what = blob, what
        self._items: list[Any] | None = None

    def item(self, index: int) -> Any:
        """Record ``index``'s parse, or :data:`NO_PARSE`."""
        return self.items()[index]

    def items(self) -> list[Any]:
        """Every record's parse (or :data:`NO_PARSE`), in batch order."""
        items = self._items
        if items is None:
            items = self._items = self._unmarshal()
        return items

    def _unmarshal(self) -> list[Any]:
        # The header checked in __init__ makes marshal return a list of that length
        # or raise: nothing else to check on what it returns.
        try:
            items: list[Any] = marshal.loads(self._blob)
        except (EOFError, ValueError, TypeError) as exc:
            raise SerializationError(
                f"{self._what}: the parsed column is not marshal data ({exc})"
            ) from exc
        return items


def has_parse(record: Record) -> bool:
    """Whether ``record`` still holds a parse for its first ``json()`` (none took it)."""
    return hasattr(record, "_parsed")


def parses_to_send(records: Sequence[Record]) -> list[Any] | None:
    """Host side: each record's parse for its first ``json()`` (:data:`NO_PARSE` where it
    holds none), or None when no record holds one.

    A record parked by :func:`park_parses` (sent to a guest before, by another stage or
    again after a time-out) gives the parse from its column.
    """
    parses = [getattr(r, "_parsed", NO_PARSE) for r in records]
    if tuple in map(type, parses):  # a C-level pass: a tuple is a parked parse
        parses = [p[0].item(p[1]) if type(p) is tuple else p for p in parses]
    if all(map(is_, parses, repeat(NO_PARSE))):
        return None
    return parses


def park_parses(records: Sequence[Record], blob: bytes) -> None:
    """Host side: each record holds its parse as ``blob``, the parsed column just sent for
    them (``marshal`` bytes of :func:`parses_to_send`), not as objects.

    The guest parses nothing again with the column; the host's own objects are
    then only for a later native ``json()``, which most records never meet (a
    filter drops them, a map reads only the value). Held as objects, a batch's
    parses lived until its records left the sinks, a few batches later and out
    of the caches; freed now, while they are hot, they cost the driver less
    (docs/performance.md has the figures). A later ``json()`` gets an equal
    value from the column (``marshal`` keeps every JSON type exactly). Only this
    process's own bytes are ever read back here.
    """
    count = len(records)
    column = HostParses(blob, count, "the host's parsed column")
    # (column, index) per record, made in C, as the guest's decoder sets them; starmap
    # over zip, as _trusted_records sets a column (the setter's argument tuple reused).
    held = zip(repeat(column, count), range(count), strict=True)
    deque(starmap(_set_parsed, zip(records, held, strict=True)), maxlen=0)
