"""The component side of ``wit/plugin.wit``: a thin shim over the same Dispatcher.

``dataflare build`` generates an app module that imports the author's plugin
file and calls :func:`export_plugin`; componentize-py runs that at build time,
so a missing or broken plugin fails the build, not the first batch. Only the
guest imports this module (``wit_world`` exists only there).
"""

from __future__ import annotations

import gc
import importlib
import sys
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from dataflare._errors import ConfigurationError, ProcessingError, SerializationError
from dataflare._kinds import PluginKind
from dataflare._record import Record

from ._definition import PluginModule, find_plugin
from ._dispatch import Dispatcher
from ._host_parses import has_parse
from ._json import install_in_json_module
from ._plugin_files import RaisedAt, join_message
from ._wire import (
    decode_accumulator,
    decode_request,
    encode_accumulator,
    encode_kept,
    encode_records,
)

__all__ = ["export_plugin", "export_plugin_from_folder"]


def export_plugin(namespace: Mapping[str, object], origin: str, sdk_version: str) -> type:
    """The class componentize-py exports as ``plugin``, bound to the plugin in ``namespace``."""
    from componentize_py_types import Err
    from wit_world import exports
    from wit_world.imports import types as wit

    # Plugins parse JSON with json.loads, the guest's largest per-record cost;
    # the fast path returns and raises exactly what json.loads does. This runs
    # at build time, so the component's snapshot starts with it in place.
    install_in_json_module()
    _pace_collector()
    # componentize-py may build a fresh export object per call: the state lives in
    # this one object, which every export method of the class calls into.
    guest = _exports_for(namespace, origin, sdk_version, wit, Err)
    return _plugin_class(lambda: guest, exports.Plugin, wit, Err)


def export_plugin_from_folder(folder: str, origin_file: str, module: str, sdk_version: str) -> type:
    """The ``plugin`` class of the shared runtime: the plugin is the module ``module`` in
    ``folder`` (which the host mounts read-only), imported on the first call.

    The runtime holds CPython and the SDK, the same for every plugin, so it is built
    and compiled once per host; each plugin's component is the runtime plus its own
    files. Its module-level code runs when an instance starts, not at build time.
    """
    from componentize_py_types import Err
    from wit_world import exports
    from wit_world.imports import types as wit

    install_in_json_module()
    _pace_collector()
    loaded: list[_Exports] = []

    def guest() -> _Exports:
        if not loaded:
            with open(f"{folder}/{origin_file}", encoding="utf-8") as named:
                origin = named.read()
            sys.path.insert(0, folder)
            # The runtime's snapshot was taken once, when it was built: without a new
            # seed every instance of every plugin would draw the same numbers.
            if "random" in sys.modules:
                sys.modules["random"].seed()
            try:
                imported = importlib.import_module(module)
            except BaseException:
                # describe cannot return an error: the traceback goes to stderr, which
                # the host shows, before the call fails.
                traceback.print_exc()
                raise
            loaded.append(_exports_for(vars(imported), origin, sdk_version, wit, Err))
        return loaded[0]

    return _plugin_class(guest, exports.Plugin, wit, Err)


# Objects allocated between two young collections of the guest's cyclic collector.
_YOUNG_COLLECTION = 50_000


def _pace_collector() -> None:
    """Collect the guest's young objects less often (set at build time: the snapshot keeps it).

    A batch allocates a dozen objects per record (the record, the host's parse of
    its value) that live until the call returns: at CPython's default pace the
    collector visits them several times per batch, at this one mostly once they
    are freed. Cyclic garbage waits a little longer: a few MB at most.
    """
    young, *older = gc.get_threshold()
    gc.set_threshold(max(young, _YOUNG_COLLECTION), *older)


def _exports_for(
    namespace: Mapping[str, object], origin: str, sdk_version: str, wit: Any, err: type[Exception]
) -> _Exports:
    plugin = find_plugin(namespace, origin)
    if plugin.files is not None:
        plugin.files.keep_source_lines()  # the sandbox may not read them at run time
    return _Exports(plugin, origin, sdk_version, wit, err)


def _plugin_class(
    guest: Callable[[], _Exports], base: type, wit: Any, err: type[Exception]
) -> type:
    def method(name: str) -> Callable[..., Any]:
        return lambda *args: getattr(guest(), name)(*args)

    methods = {name: _guarded(method(name), wit, err) for name in _EXPORTS}
    return type("Plugin", (base,), methods)


_EXPORTS = (
    "describe",
    "init",
    "filter",
    "map",
    "filter_map",
    "array_map",
    "aggregate",
    "look_back",
    "snapshot_state",
    "restore_state",
)


def _guarded(func: Callable[..., Any], wit: Any, err: type[Exception]) -> Callable[..., Any]:
    # The boundary is the one place exceptions become WIT errors: an uncaught one
    # would trap the instance and lose its message.
    def call(self: object, *args: Any) -> Any:
        try:
            return func(*args)
        except err:
            raise
        except SerializationError as exc:
            raise err(wit.CallError_Serialization(str(exc))) from exc
        except Exception as exc:  # a shim bug must come back as text, not a trap
            raise err(wit.CallError_Internal(traceback.format_exc())) from exc

    return call


class _Exports:
    """Every export of ``wit/plugin.wit`` for one plugin; ``init`` makes its Dispatcher."""

    def __init__(
        self, plugin: PluginModule, origin: str, sdk_version: str, wit: Any, err: type[Exception]
    ) -> None:
        self._plugin = plugin
        self._origin = origin
        self._sdk_version = sdk_version
        self._wit = wit
        self._err = err
        self._dispatcher: Dispatcher | None = None
        self._first: Record | None = None  # the last batch's first record

    def _initialized(self, before: str) -> Dispatcher:
        if self._dispatcher is None:
            raise self._err(self._wit.CallError_Unsupported(f"init must be called before {before}"))
        return self._dispatcher

    def _of_kind(self, kind: PluginKind) -> Dispatcher:
        plugin = self._plugin
        if plugin.kind is not kind:
            raise self._err(
                self._wit.CallError_Unsupported(
                    f"plugin {plugin.name!r} is a {plugin.kind} plugin, not a {kind} plugin"
                )
            )
        return self._initialized("any batch")

    def _error(self, error: ProcessingError | None) -> Any:
        if error is None:
            return None
        return self._wit.ProcessingError(
            plugin=error.plugin,
            kind=error.kind,
            offset=error.offset,
            index=error.index,
            error_type=error.error_type,
            message=join_message(
                error.error_message,
                None
                if error.location is None
                else RaisedAt(error.location, error.frames or ""),
            ),
        )

    def describe(self) -> Any:
        wit, plugin = self._wit, self._plugin
        definition = plugin.definition
        declared, bounds, window = plugin.params, definition.state, definition.window
        return wit.PluginInfo(
            name=plugin.name,
            kind=getattr(wit.PluginKind, plugin.kind.name),
            params=None
            if declared is None
            else [wit.ParamDecl(name=n, default=d) for n, d in declared.items()],
            initial=definition.initial.decode("latin-1"),
            emit=getattr(wit.AggregateEmit, definition.emit.name),
            sdk_version=self._sdk_version,
            origin=self._origin,
            has_look_back=plugin.look_back is not None,
            window=None if window is None else window.to_json(),
            state=None
            if bounds is None
            else wit.StateDecl(max_entries=bounds.max_entries, max_bytes=bounds.max_bytes),
            # decode_request hands the host's JSON parse to each record's first json().
            parsed_json=True,
        )

    def init(self, params: list[tuple[str, str]]) -> None:
        try:
            self._dispatcher = Dispatcher(self._plugin, dict(params))
        except ConfigurationError as exc:
            raise self._err(self._wit.CallError_Configuration(str(exc))) from exc

    def _decode(self, batch: str) -> list[Record]:
        # A plugin that read the last batch's first record as JSON reads this batch's
        # too: its parses are unmarshalled at once, sparing each json() the lookup.
        first = self._first
        records = decode_request(batch, parses_now=first is not None and not has_parse(first))
        self._first = records[0] if records else None
        return records

    def filter(self, batch: str) -> Any:
        dispatcher = self._of_kind(PluginKind.FILTER)
        kept, consumed, error = dispatcher.filter_indices(self._decode(batch))
        return self._wit.FilterOutput(
            kept=encode_kept(kept), consumed=consumed, error=self._error(error)
        )

    def _records(self, kind: PluginKind, batch: str) -> Any:
        result = self._of_kind(kind).process(self._decode(batch))
        return self._wit.RecordsOutput(
            records=encode_records(result.outputs, result.sources),
            consumed=result.consumed,
            error=self._error(result.error),
        )

    def map(self, batch: str) -> Any:
        return self._records(PluginKind.MAP, batch)

    def filter_map(self, batch: str) -> Any:
        return self._records(PluginKind.FILTER_MAP, batch)

    def array_map(self, batch: str) -> Any:
        return self._records(PluginKind.ARRAY_MAP, batch)

    def aggregate(self, batch: str, accumulator: str | None) -> Any:
        dispatcher = self._of_kind(PluginKind.AGGREGATE)
        start = None if accumulator is None else decode_accumulator(accumulator)
        result = dispatcher.process(self._decode(batch), start)
        return self._wit.AggregateOutput(
            records=encode_records(result.outputs, result.sources),
            consumed=result.consumed,
            error=self._error(result.error),
            accumulator=encode_accumulator(result.accumulator) or "",
        )

    def look_back(self, batch: str) -> Any:
        result = self._initialized("look-back").look_back(self._decode(batch))
        return self._wit.LookBackOutput(
            accumulator=encode_accumulator(result.accumulator),
            consumed=result.consumed,
            error=self._error(result.error),
        )

    def snapshot_state(self) -> str:
        return self._initialized("snapshot-state").snapshot_state().decode("latin-1")

    def restore_state(self, snapshot: str) -> None:
        dispatcher = self._initialized("restore-state")
        try:
            dispatcher.restore_state(decode_accumulator(snapshot))
        except ConfigurationError as exc:
            raise self._err(self._wit.CallError_Configuration(str(exc))) from exc
