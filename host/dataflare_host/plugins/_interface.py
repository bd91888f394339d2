"""The one interface every plugin presents to the host, whatever runs it."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence

import attrs

from dataflare import PluginError, PluginKind, Record
from dataflare.runtime import EMPTY_SNAPSHOT, BatchResult, LookBackResult, StateBounds
from dataflare_host._closing import Closing

__all__ = ["Begun", "Plugin"]


@attrs.frozen
class Begun:
    """A batch a plugin has begun (:meth:`Plugin.begin`): its result, when asked for.

    ``finish`` waits for the batch and returns what :meth:`Plugin.process`
    would; ``answered(timeout_s)`` says whether it would return without waiting
    (for a batch the backend runs elsewhere), within ``timeout_s``; ``cancel``
    abandons a batch whose result will not be asked for (a stopping pipeline).
    ``start`` sends a batch begun while the plugin had every instance busy (its
    request already made) if one is free now; it does nothing otherwise.
    """

    finish: Callable[[], BatchResult]
    answered: Callable[[float], bool] = attrs.field(default=lambda timeout_s: True)
    cancel: Callable[[], None] = attrs.field(default=lambda: None)
    start: Callable[[], None] = attrs.field(default=lambda: None)

    def result(self) -> BatchResult:
        """The batch's result (waiting for it when it is still running)."""
        return self.finish()


class Plugin(Closing, abc.ABC):
    """A loaded plugin: process batches, report its name and kind, close.

    Backends (native, WASM) implement :meth:`_run`; everything else, including
    an aggregate's accumulator kept across batches, lives here so that no
    caller ever needs to know which backend runs a plugin. A plugin that
    declares state (:attr:`state_bounds`) keeps it inside the backend;
    :meth:`snapshot_state` and :meth:`restore_state` move it in and out as
    bytes that are the same for both backends.

    >>> from dataflare_host import load_plugin
    >>> with load_plugin("guest_examples/uppercase_map.py") as plugin:  # doctest: +SKIP
    ...     plugin.process([Record(b"hi")]).outputs
    [Record(value=b'HI', ...)]
    """

    def __init__(
        self,
        *,
        name: str,
        kind: PluginKind,
        origin: str,
        initial: bytes,
        state: StateBounds | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.origin = origin
        self._initial = initial
        self.state_bounds = state
        """The bounds of the state the plugin declares; None when it keeps none."""
        self._accumulator: bytes | None = None
        self._closed = False

    @property
    def carries_state(self) -> bool:
        """Whether each batch depends on the ones before it (an aggregate's accumulator,
        or declared state): its batches then run one at a time, in order, on one instance."""
        return self.kind is PluginKind.AGGREGATE or self.state_bounds is not None

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

    def begin(self, records: Sequence[Record]) -> Begun:
        """Start a batch and return at once; :meth:`Begun.result` gives what :meth:`process`
        would have.

        A backend that runs plugins in another process (WASM, in its sandbox
        process) sends the batch now, so the caller can do other work meanwhile
        (a pipeline writes the previous batch while the guest runs this one).
        Otherwise, and for a plugin that keeps state between batches (an
        aggregate, declared state), the batch runs when its result is asked for.
        A batch begun while the one before it still runs is prepared (encoded)
        at once and sent by :meth:`Begun.start` (or its result); take results in
        the order the batches were begun.

        >>> begun = plugin.begin(batch)  # doctest: +SKIP
        >>> write(previous)  # the sandbox process works on batch meanwhile  # doctest: +SKIP
        >>> begun.result().outputs  # doctest: +SKIP
        """
        if self._closed:
            raise PluginError(f"plugin {self.name!r} ({self.origin}) is closed")
        if not self.carries_state:
            begun = self._begin(records)
            if begun is not None:
                return begun
        return Begun(lambda: self.process(records))

    def _begin(self, records: Sequence[Record]) -> Begun | None:
        """Backend hook for :meth:`begin` (a stateless plugin): the batch sent off, or
        None when this backend runs it in the caller's thread anyway."""
        return None

    @property
    def concurrent_batches(self) -> int:
        """How many begun batches run at the same time (elsewhere): a caller that
        begins more than one ahead keeps that many out. 1 unless a backend says so."""
        return 1

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

    def snapshot_state(self) -> bytes:
        """The plugin's declared state as bytes, to checkpoint; call it between batches.

        :data:`~dataflare.runtime.EMPTY_SNAPSHOT` for a plugin that declares none.
        """
        if self._closed:
            raise PluginError(f"plugin {self.name!r} ({self.origin}) is closed")
        if self.state_bounds is None:
            return EMPTY_SNAPSHOT
        return self._snapshot_state()

    def restore_state(self, snapshot: bytes | None) -> None:
        """Replace the plugin's state by a :meth:`snapshot_state` (None: empty it).

        Raises :class:`~dataflare.SerializationError` for a malformed snapshot and
        :class:`~dataflare.ConfigurationError` for entries given to a plugin
        that declares no state.
        """
        if self._closed:
            raise PluginError(f"plugin {self.name!r} ({self.origin}) is closed")
        self._restore_state(EMPTY_SNAPSHOT if snapshot is None else snapshot)

    @abc.abstractmethod
    def _snapshot_state(self) -> bytes:
        """Backend hook for :meth:`snapshot_state` (only called when state is declared)."""

    @abc.abstractmethod
    def _restore_state(self, snapshot: bytes) -> None:
        """Backend hook for :meth:`restore_state`."""

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
