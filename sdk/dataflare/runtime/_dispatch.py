"""The one dispatcher: a batch in, calls of the plugin function, outputs and first error out.

The native backend calls it in-process; the WASM component's exports call the
very same code inside the guest. That is what makes both runtimes agree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from dataflare._errors import ConfigurationError, ProcessingError
from dataflare._kinds import AggregateEmit, PluginKind
from dataflare._record import Record
from dataflare._windows import Window

from . import _state
from ._definition import PluginModule
from ._error_details import exception_text, preview
from ._window_state import LateRecordError, WindowState, window_from_json

__all__ = ["BatchResult", "Dispatcher", "LookBackResult"]


@attrs.frozen
class BatchResult:
    """What one batch produced.

    ``outputs`` are the records emitted before the first failure (all of them when
    ``error`` is None) and ``sources`` the index of the input each came from;
    ``consumed`` counts the input records fully processed, so ``records[consumed]``
    is the one that failed. ``accumulator`` is an aggregate's state after the last
    consumed record (None for other kinds).
    """

    outputs: list[Record]
    sources: list[int]
    consumed: int
    error: ProcessingError | None = None
    accumulator: bytes | None = None

    @property
    def ok(self) -> bool:
        """True when every input record was processed."""
        return self.error is None


@attrs.frozen
class LookBackResult:
    """What a ``@look_back`` warm-up produced: maybe a new accumulator, maybe an error."""

    accumulator: bytes | None
    consumed: int
    error: ProcessingError | None = None


class Dispatcher:
    """Runs one plugin over batches: resolves its params and runs its init hook once.

    >>> import dataflare
    >>> from dataflare.runtime import find_plugin
    >>> @dataflare.filter
    ... def long(record):
    ...     return len(record.value) > 2
    >>> d = Dispatcher(find_plugin({"long": long}, "doc"), {})
    >>> [r.value for r in d.process([Record(b"ab"), Record(b"abc")]).outputs]
    [b'abc']
    """

    def __init__(self, plugin: PluginModule, params: Mapping[str, str]) -> None:
        self.plugin = plugin
        self.window: Window | None = plugin.definition.window
        override = params.get("dataflare.window")
        if override is not None:
            if plugin.kind is not PluginKind.AGGREGATE:
                raise ConfigurationError(
                    f"plugin {plugin.name!r} ({plugin.origin}) is a {plugin.kind} plugin; "
                    "only aggregate plugins take a window",
                    setting="window",
                )
            self.window = window_from_json(override)
        self.params = plugin.resolve_params(params)
        self.context: Any = self.params
        if plugin.init is not None:
            try:
                self.context = plugin.init.function(self.params)
            except Exception as exc:  # whatever the author's hook raised is the point
                raise ConfigurationError(
                    f"plugin {plugin.name!r} ({plugin.origin}): @init hook "
                    f"{plugin.init.name!r} failed: {type(exc).__name__}: {exc}"
                ) from exc
        definition = plugin.definition
        self._name = definition.name
        self._kind = definition.kind
        self._func = definition.function
        self._takes_context = definition.takes_context
        self.state: _state.KeyedState | None = None
        """The plugin's live state, when it declares one (see :meth:`snapshot_state`)."""
        if definition.state is not None:
            bounds = definition.state
            self.state = _state.KeyedState(bounds.max_entries, bounds.max_bytes)
            self._func = _with_state(self._func, self.state, self.context, self._takes_context)
            self._takes_context = False
        self.initial = definition.initial
        self._emit_each = definition.emit is AggregateEmit.EACH
        self._run = {
            PluginKind.FILTER: self._filter,
            PluginKind.MAP: self._records,
            PluginKind.FILTER_MAP: self._records,
            PluginKind.ARRAY_MAP: self._records,
            PluginKind.AGGREGATE: self._aggregate,
        }[self._kind]

    def process(self, records: Sequence[Record], accumulator: bytes | None = None) -> BatchResult:
        """Run the plugin over ``records`` in order, stopping at the first failure.

        ``accumulator`` is an aggregate's state carried from the previous batch
        (None starts from the plugin's ``initial``); other kinds ignore it. A
        plugin's declared state (:attr:`state`) is changed in place: what the
        records before a failing one wrote stays, and so does what the failing
        one wrote before it raised, as an aggregate's accumulator keeps the
        records before the failure.
        """
        return self._run(records, accumulator)

    def snapshot_state(self) -> bytes:
        """The plugin's state as bytes (a ``record-batch`` of its entries, oldest first);
        the empty snapshot when the plugin declares no state."""
        if self.state is None:
            return _state.EMPTY_SNAPSHOT
        return _state.snapshot_state(self.state)

    def restore_state(self, snapshot: bytes) -> None:
        """Replace the plugin's state by ``snapshot`` (what :meth:`snapshot_state` gave).

        Raises :class:`SerializationError` for a malformed snapshot and
        :class:`ConfigurationError` for entries given to a plugin without state.
        """
        what = f"plugin {self._name!r} ({self.plugin.origin}): the state snapshot"
        if self.state is not None:
            _state.restore_state(self.state, snapshot, what)
            return
        keys, _ = _state.decode_entries(snapshot, what)
        if keys:
            raise ConfigurationError(
                f"plugin {self._name!r} ({self.plugin.origin}) declares no state, so it cannot "
                f"take a snapshot of {len(keys):,} entries; was it declared with state= before?"
            )

    def filter_indices(
        self, records: Sequence[Record]
    ) -> tuple[list[int], int, ProcessingError | None]:
        """For a filter: the indices of kept records, how many were consumed, the error.

        Lets a boundary send back positions instead of records it already has.
        """
        func = self._func
        context = self.context
        kept: list[int] = []
        append = kept.append
        index = 0
        try:
            # Two loops rather than a wrapper: an extra call per record costs ~10%
            # inside the WASM guest, and filters are the cheapest, hottest kind.
            if self._takes_context:
                for index, record in enumerate(records):
                    verdict = func(record, context)
                    if verdict is True:
                        append(index)
                    elif verdict is not False:
                        raise _wrong_return(self._kind, "bool", verdict)
            else:
                for index, record in enumerate(records):
                    verdict = func(record)
                    if verdict is True:
                        append(index)
                    elif verdict is not False:
                        raise _wrong_return(self._kind, "bool", verdict)
        except Exception as exc:  # noqa: BLE001 - whatever the plugin raised is reported
            return kept, index, self._error(records, index, exc)
        return kept, len(records), None

    def _filter(self, records: Sequence[Record], _acc: bytes | None) -> BatchResult:
        kept, consumed, error = self.filter_indices(records)
        return BatchResult([records[i] for i in kept], kept, consumed, error)

    def _records(self, records: Sequence[Record], _acc: bytes | None) -> BatchResult:
        # map, filter_map and array_map differ only in what one return value
        # yields: the per-kind emit checks it and adds that input's outputs.
        emit = _EMIT[self._kind]
        func = self._func
        context = self.context
        takes_context = self._takes_context
        outputs: list[Record] = []
        sources: list[int] = []
        index = 0
        try:
            for index, record in enumerate(records):
                result = func(record, context) if takes_context else func(record)
                emit(result, record.offset, index, outputs, sources)
        except Exception as exc:  # noqa: BLE001 - whatever the plugin raised is reported
            return BatchResult(outputs, sources, index, self._error(records, index, exc))
        return BatchResult(outputs, sources, len(records))

    def look_back(self, records: Sequence[Record]) -> LookBackResult:
        """Feed warm-up records to the ``@look_back`` hook, oldest first.

        For an aggregate, the last bytes the hook returned become the accumulator.
        """
        hook = self.plugin.look_back
        if hook is None:
            return LookBackResult(None, len(records))
        accumulator: bytes | None = None
        index = 0
        try:
            for index, record in enumerate(records):  # noqa: B007 - read in the handler
                if hook.takes_context:
                    result = hook.function(record, self.context)
                else:
                    result = hook.function(record)
                if result is None:
                    continue
                if self._kind is not PluginKind.AGGREGATE or type(result) is not bytes:
                    expected = "bytes or None" if self._kind is PluginKind.AGGREGATE else "None"
                    raise TypeError(
                        f"a @look_back hook of a {self._kind} plugin must return {expected}, "
                        f"but it returned {result!r:.80} (a {type(result).__name__})"
                    )
                accumulator = result
        except Exception as exc:  # noqa: BLE001 - whatever the hook raised is reported
            return LookBackResult(accumulator, index, self._error(records, index, exc))
        return LookBackResult(accumulator, len(records))

    def _aggregate(self, records: Sequence[Record], acc: bytes | None) -> BatchResult:
        if self.window is not None:
            return self._windowed(records, acc, self.window)
        accumulator = self.initial if acc is None else acc
        outputs: list[Record] = []
        emit_each = self._emit_each
        func = self._func
        context = self.context
        takes_context = self._takes_context
        index = 0
        try:
            for index, record in enumerate(records):  # noqa: B007 - read in the handler
                if takes_context:
                    result = func(accumulator, record, context)
                else:
                    result = func(accumulator, record)
                if type(result) is not bytes:
                    raise _wrong_return(self._kind, "bytes (the new accumulator)", result)
                accumulator = result
                if emit_each:
                    # evolve's path for a new bytes value: the record's other fields were
                    # checked when it was made (Record() would check and copy them again).
                    outputs.append(record.evolve(value=result))
        except Exception as exc:  # noqa: BLE001 - whatever the plugin raised is reported
            sources = list(range(len(outputs)))
            return BatchResult(
                outputs, sources, index, self._error(records, index, exc), accumulator
            )
        if emit_each:
            return BatchResult(outputs, list(range(len(records))), len(records), None, accumulator)
        if not records:
            return BatchResult([], [], 0, None, accumulator)
        emitted = records[-1].evolve(value=accumulator)
        return BatchResult([emitted], [len(records) - 1], len(records), None, accumulator)

    def _windowed(
        self, records: Sequence[Record], acc: bytes | None, window: Window
    ) -> BatchResult:
        state = WindowState.decode(acc)
        outputs: list[Record] = []
        sources: list[int] = []
        func = self._func
        context = self.context
        takes_context = self._takes_context
        index = 0
        try:
            for index, record in enumerate(records):
                if record.timestamp is None:
                    raise ValueError("a windowed aggregate needs record timestamps; this has none")

                def fold(current: bytes, record: Record = record) -> bytes:
                    if takes_context:
                        return func(current, record, context)  # type: ignore[no-any-return]
                    return func(current, record)  # type: ignore[no-any-return]

                for start, value, metadata in state.add(
                    window, record.timestamp, self.initial, fold
                ):
                    outputs.append(
                        Record(value, None, start + window.size_ms - 1, metadata, record.offset)
                    )
                    sources.append(index)
        except LateRecordError as exc:
            return BatchResult(
                outputs, sources, index, self._error(records, index, exc), state.encode()
            )
        except Exception as exc:  # noqa: BLE001 - whatever the plugin raised is reported
            return BatchResult(
                outputs, sources, index, self._error(records, index, exc), state.encode()
            )
        return BatchResult(outputs, sources, len(records), None, state.encode())

    def _error(self, records: Sequence[Record], index: int, exc: Exception) -> ProcessingError:
        record = records[index] if index < len(records) else None
        files = self.plugin.files
        raised_at = files.raised_at(exc) if files is not None else None
        return ProcessingError(
            plugin=self._name,
            kind=self._kind.value,
            offset=record.offset if record is not None else -1,
            index=index,
            error_type=type(exc).__name__,
            error_message=exception_text(exc),
            record_key=preview(record.key) if record is not None else None,
            record_value=preview(record.value) if record is not None else None,
            location=raised_at.location if raised_at is not None else None,
            frames=raised_at.traceback if raised_at is not None else None,
        )


def _with_state(
    func: Callable[..., Any], state: _state.KeyedState, context: Any, takes_context: bool
) -> Callable[[Record], Any]:
    # One argument in, like a stateless function without context: the hot loops
    # stay as they are, and only stateful plugins pay for the extra call.
    if takes_context:
        return lambda record: func(record, state, context)
    return lambda record: func(record, state)


# An emit appends to ``outputs`` what one plugin return value yields, and the
# input's index to ``sources`` once per output. It appends in place rather than
# returning a list: a list per record made a map about 20% slower (measured).
_Emit = Callable[[Any, int, int, list[Record], list[int]], None]


def _emit_one(kind: PluginKind, expected: str, *, none_allowed: bool) -> _Emit:
    # map and filter_map: one Record per input, or (filter_map) None for no output.
    def emit(
        result: Any, offset: int, index: int, outputs: list[Record], sources: list[int]
    ) -> None:
        if type(result) is not Record:
            if result is None and none_allowed:
                return
            raise _wrong_return(kind, expected, result)
        outputs.append(_at_offset(result, offset))
        sources.append(index)

    return emit


def _emit_array_map(
    result: Any, offset: int, index: int, outputs: list[Record], sources: list[int]
) -> None:
    if isinstance(result, (Record, bytes, str)) or not hasattr(result, "__iter__"):
        raise _wrong_return(PluginKind.ARRAY_MAP, "an iterable of Records", result)
    produced = []
    for item in result:
        if type(item) is not Record:
            raise _wrong_return(PluginKind.ARRAY_MAP, "Records in its iterable", item)
        produced.append(_at_offset(item, offset))
    # All of a record's outputs, or none: a failure half-way through
    # must not leave part of one input's results behind.
    outputs.extend(produced)
    sources.extend([index] * len(produced))


_EMIT: dict[PluginKind, _Emit] = {
    PluginKind.MAP: _emit_one(PluginKind.MAP, "a Record", none_allowed=False),
    PluginKind.FILTER_MAP: _emit_one(PluginKind.FILTER_MAP, "a Record or None", none_allowed=True),
    PluginKind.ARRAY_MAP: _emit_array_map,
}


def _at_offset(record: Record, offset: int) -> Record:
    # Outputs carry the offset of the input they came from, so a later failure
    # or a checkpoint names a position in the source stream.
    if record.offset == offset:
        return record
    return Record(record.value, record.key, record.timestamp, record.metadata, offset)


def _wrong_return(kind: PluginKind, expected: str, got: object) -> TypeError:
    return TypeError(
        f"a {kind} plugin must return {expected}, but it returned {got!r:.80} "
        f"(a {type(got).__name__})"
    )
