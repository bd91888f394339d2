"""WIT records and variants as the sandbox process hands them to the host.

wasmtime-py lifts a record to ``wasmtime.component.Record`` and a variant to
``wasmtime.component.Variant``; pickled as such, the host would have to import
wasmtime (~20 ms of a cold start) only to unpickle an answer. The sandbox
process converts them to these two classes instead (standard library only),
with the same attribute names, so the host reads them as it read wasmtime's.
"""

from __future__ import annotations

from typing import Any

__all__ = ["GuestRecord", "GuestVariant"]


class GuestRecord:
    """A WIT record: one attribute per field (WIT's kebab-case names kept as wasmtime
    gives them).

    >>> GuestRecord({"consumed": 2}).consumed
    2
    """

    def __init__(self, fields: dict[str, Any]) -> None:
        self.__dict__.update(fields)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GuestRecord) and vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]  # mutable, like wasmtime's

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in vars(self).items())
        return f"GuestRecord({fields})"


class GuestVariant:
    """A WIT variant case: its ``tag`` and its ``payload`` (None for a case without one).

    >>> GuestVariant("configuration", "bad field").tag
    'configuration'
    """

    __slots__ = ("payload", "tag")

    def __init__(self, tag: str, payload: Any = None) -> None:
        self.tag = tag
        self.payload = payload

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GuestVariant) and (self.tag, self.payload) == (
            other.tag,
            other.payload,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"GuestVariant({self.tag!r}, {self.payload!r})"
