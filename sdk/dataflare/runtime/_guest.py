"""The component side of ``wit/plugin.wit``: a thin shim over the same Dispatcher.

``dataflare build`` generates an app module that imports the author's plugin
file and calls :func:`export_plugin`; componentize-py runs that at build time,
so a missing or broken plugin fails the build, not the first batch. Only the
guest imports this module (``wit_world`` exists only there).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from typing import Any

from dataflare._errors import ConfigurationError, ProcessingError, SerializationError
from dataflare._kinds import PluginKind

from ._definition import find_plugin
from ._dispatch import Dispatcher
from ._json import install_in_json_module
from ._wire import (
    decode_accumulator,
    decode_request,
    encode_accumulator,
    encode_kept,
    encode_records,
)

__all__ = ["export_plugin"]


def export_plugin(namespace: Mapping[str, object], origin: str, sdk_version: str) -> type:
    """The class componentize-py exports as ``plugin``, bound to the plugin in ``namespace``."""
    from componentize_py_types import Err
    from wit_world import exports
    from wit_world.imports import types as wit

    plugin = find_plugin(namespace, origin)
    # Plugins parse JSON with json.loads, the guest's largest per-record cost;
    # the fast path returns and raises exactly what json.loads does. This runs
    # at build time, so the component's snapshot starts with it in place.
    install_in_json_module()
    kinds = {kind: getattr(wit.PluginKind, kind.name) for kind in PluginKind}
    # componentize-py may build a fresh export object per call: state lives here.
    state: dict[str, Dispatcher] = {}

    def dispatcher(kind: PluginKind) -> Dispatcher:
        if plugin.kind is not kind:
            raise Err(
                wit.CallError_Unsupported(
                    f"plugin {plugin.name!r} is a {plugin.kind} plugin, not a {kind} plugin"
                )
            )
        if "d" not in state:
            raise Err(wit.CallError_Unsupported("init must be called before any batch"))
        return state["d"]

    def wit_error(error: ProcessingError | None) -> Any:
        if error is None:
            return None
        return wit.ProcessingError(
            plugin=error.plugin,
            kind=error.kind,
            offset=error.offset,
            index=error.index,
            error_type=error.error_type,
            message=error.error_message,
        )

    def guarded(func: Callable[..., Any]) -> Callable[..., Any]:
        # The boundary is the one place exceptions become WIT errors: an uncaught
        # one would trap the instance and lose its message.
        def call(self: object, *args: Any) -> Any:
            try:
                return func(*args)
            except Err:
                raise
            except SerializationError as exc:
                raise Err(wit.CallError_Serialization(str(exc))) from exc
            except Exception as exc:  # a shim bug must come back as text, not a trap
                raise Err(wit.CallError_Internal(traceback.format_exc())) from exc

        return call

    def describe() -> Any:
        declared = plugin.params
        bounds = plugin.definition.state
        params = (
            None
            if declared is None
            else [wit.ParamDecl(name=n, default=d) for n, d in declared.items()]
        )
        return wit.PluginInfo(
            name=plugin.name,
            kind=kinds[plugin.kind],
            params=params,
            initial=plugin.definition.initial.decode("latin-1"),
            emit=getattr(wit.AggregateEmit, plugin.definition.emit.name),
            sdk_version=sdk_version,
            origin=origin,
            has_look_back=plugin.look_back is not None,
            window=None if plugin.definition.window is None else plugin.definition.window.to_json(),
            state=None
            if bounds is None
            else wit.StateDecl(max_entries=bounds.max_entries, max_bytes=bounds.max_bytes),
        )

    def init(params: list[tuple[str, str]]) -> None:
        try:
            state["d"] = Dispatcher(plugin, dict(params))
        except ConfigurationError as exc:
            raise Err(wit.CallError_Configuration(str(exc))) from exc

    def filter_batch(batch: str) -> Any:
        d = dispatcher(PluginKind.FILTER)
        kept, consumed, error = d.filter_indices(decode_request(batch))
        return wit.FilterOutput(kept=encode_kept(kept), consumed=consumed, error=wit_error(error))

    def records_batch(kind: PluginKind) -> Callable[[str], Any]:
        def run(batch: str) -> Any:
            d = dispatcher(kind)
            result = d.process(decode_request(batch))
            return wit.RecordsOutput(
                records=encode_records(result.outputs, result.sources),
                consumed=result.consumed,
                error=wit_error(result.error),
            )

        return run

    def look_back_batch(batch: str) -> Any:
        if "d" not in state:
            raise Err(wit.CallError_Unsupported("init must be called before look-back"))
        result = state["d"].look_back(decode_request(batch))
        return wit.LookBackOutput(
            accumulator=encode_accumulator(result.accumulator),
            consumed=result.consumed,
            error=wit_error(result.error),
        )

    def aggregate_batch(batch: str, accumulator: str | None) -> Any:
        d = dispatcher(PluginKind.AGGREGATE)
        start = None if accumulator is None else decode_accumulator(accumulator)
        result = d.process(decode_request(batch), start)
        return wit.AggregateOutput(
            records=encode_records(result.outputs, result.sources),
            consumed=result.consumed,
            error=wit_error(result.error),
            accumulator=encode_accumulator(result.accumulator) or "",
        )

    def snapshot_state() -> str:
        if "d" not in state:
            raise Err(wit.CallError_Unsupported("init must be called before snapshot-state"))
        return state["d"].snapshot_state().decode("latin-1")

    def restore_state(snapshot: str) -> None:
        if "d" not in state:
            raise Err(wit.CallError_Unsupported("init must be called before restore-state"))
        try:
            state["d"].restore_state(decode_accumulator(snapshot))
        except ConfigurationError as exc:
            raise Err(wit.CallError_Configuration(str(exc))) from exc

    namespace_out: dict[str, Any] = {
        "describe": guarded(describe),
        "init": guarded(init),
        "filter": guarded(filter_batch),
        "map": guarded(records_batch(PluginKind.MAP)),
        "filter_map": guarded(records_batch(PluginKind.FILTER_MAP)),
        "array_map": guarded(records_batch(PluginKind.ARRAY_MAP)),
        "aggregate": guarded(aggregate_batch),
        "look_back": guarded(look_back_batch),
        "snapshot_state": guarded(snapshot_state),
        "restore_state": guarded(restore_state),
    }
    return type("Plugin", (exports.Plugin,), namespace_out)
