"""A batch whose records are made on first use: what a source or a worker hands on
before anything needs the records themselves (a sink that writes bytes never does)."""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from typing import overload

from dataflare import Record

__all__ = ["DeferredRecords"]


class DeferredRecords(Sequence[Record], abc.ABC):
    """``count`` records, made by :meth:`_make` the first time one is asked for, then kept."""

    def __init__(self, count: int) -> None:
        self._count = count
        self._made: list[Record] | None = None

    @abc.abstractmethod
    def _make(self) -> list[Record]:
        """Every record, in order (called once)."""

    def records(self) -> list[Record]:
        """Every record, in order, made on first use."""
        if self._made is None:
            self._made = self._make()
        return self._made

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> Record: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Record]: ...

    def __getitem__(self, index: int | slice) -> Record | Sequence[Record]:
        return self.records()[index]

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records())
