"""The one interface every plugin presents to the host, whatever runs it."""

from __future__ import annotations

import abc
from collections.abc import Sequence

from dataflare import PluginError, PluginKind, Record
from dataflare.runtime import BatchResult, LookBackResult
from dataflare_host._closing import Closing

__all__ = ["Plugin"]


class Plugin(Closing, abc.ABC):
    """A loaded plugin: process batches, report its name and kind, close.

    Backends (native, WASM) implement :meth:`_run`; everything else, including
    an aggregate's accumulator kept across batches, lives here so that no
    caller ever needs to know which backend runs a plugin.

    >>> from dataflare_host import load_plugin
    >>> with load_plugin("guest_examples/uppercase_map.py") as plugin:  # doctest: +SKIP
    ...     plugin.process([Record(b"hi")]).outputs
    [Record(value=b'HI', ...)]
    """

    def __init__(self, *, name: str, kind: PluginKind, origin: str, initial: bytes) -> None:
        self.name = name
        self.kind = kind
        self.origin = origin
        self._initial = initial
        self._accumulator: bytes | None = None
        self._closed = False

    @property
    def accumulator(self) -> bytes | None:
        """An aggregate's current state (None for other kinds, or before any record)."""
        return self._accumulator

    @accumulator.setter
    def accumulator(self, value: bytes | None) -> None:
        # Restoring from a checkpoint: the next batch continues from ``value``.
        self._accumulator = value

    def process(self, records: Sequence[Record]) -> BatchResult:
        """Run the plugin over a batch; the result keeps outputs made before any error."""
        if self._closed:
            raise PluginError(f"plugin {self.name!r} ({self.origin}) is closed")
        result = self._run(records, self._accumulator)
        if self.kind is PluginKind.AGGREGATE:
            self._accumulator = result.accumulator
        return result

    @abc.abstractmethod
    def _run(self, records: Sequence[Record], accumulator: bytes | None) -> BatchResult:
        """Backend hook: process ``records`` starting from ``accumulator``."""

    def look_back(self, records: Sequence[Record]) -> LookBackResult:
        """Warm the plugin up with ``records`` (oldest first) through its ``@look_back`` hook.

        An aggregate whose hook returns bytes continues from them. A failure is
        returned (with the record's offset), not raised: the caller decides.
        """
        if self._closed:
            raise PluginError(f"plugin {self.name!r} ({self.origin}) is closed")
        result = self._look_back(records)
        if result.accumulator is not None and self.kind is PluginKind.AGGREGATE:
            self._accumulator = result.accumulator
        return result

    @abc.abstractmethod
    def _look_back(self, records: Sequence[Record]) -> LookBackResult:
        """Backend hook for :meth:`look_back`."""

    @property
    @abc.abstractmethod
    def has_look_back(self) -> bool:
        """Whether the plugin defines a ``@look_back`` hook."""

    def close(self) -> None:
        """Release what the backend holds; safe to call twice."""
        if not self._closed:
            self._closed = True
            self._close()

    def _close(self) -> None:
        """Backend hook for :meth:`close`."""

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} ({self.kind}) from {self.origin}>"
