"""The parsed column as the guest holds it: the host's JSON parses of a batch's values,
unmarshalled on the batch's first ``record.json()``.

Lazily, because a plugin that never reads JSON (a regex over the line) would
otherwise pay to unmarshal every value it never looks at. Each record holds
``(column, index)`` in the slot :meth:`~dataflare.Record.json` hands over first;
``json.loads`` never returns a tuple, so the two cannot be confused.
"""

from __future__ import annotations

import marshal
from typing import Any

from dataflare._errors import SerializationError
from dataflare._record import Record

__all__ = ["NO_PARSE", "HostParses", "has_parse"]

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
