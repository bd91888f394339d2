"""The engine every DataFlare host runs plugins with: a contract for hosts, not for authors.

A host (the native backend, or the shim inside a WebAssembly component) finds the
plugin a module defines with :func:`find_plugin` and runs it with a
:class:`Dispatcher`, so both runtimes execute the very same code. The wire
functions are the batch encodings that cross the WASM boundary (``wit/plugin.wit``);
:class:`WindowState` is a windowed aggregate's accumulator; :class:`StateBounds` what a
plugin declares about its :class:`~dataflare.KeyedState`, whose snapshots
(``Dispatcher.snapshot_state``) are the same bytes in both runtimes.

>>> import dataflare
>>> from dataflare.runtime import Dispatcher, find_plugin
>>> @dataflare.filter
... def short(record):
...     return len(record.value) < 3
>>> d = Dispatcher(find_plugin({"short": short}, "doc"), {})
>>> [r.value for r in d.process([dataflare.Record(b"ab"), dataflare.Record(b"abc")]).outputs]
[b'ab']

Like the rest of the SDK it is pure Python with attrs as its only dependency:
it runs inside the component too.
"""

from ._definition import (
    MARK,
    RESERVED_PARAM_PREFIX,
    InitHook,
    LookBackHook,
    ParamSpec,
    PluginDefinition,
    PluginModule,
    did_you_mean,
    find_plugin,
    resolve_params,
)
from ._dispatch import BatchResult, Dispatcher, LookBackResult
from ._json import loads_json
from ._state import EMPTY_SNAPSHOT, StateBounds
from ._window_state import LateRecordError, WindowState, window_from_json, window_from_mapping
from ._wire import (
    CONTRACT_VERSION,
    NO_PARSE,
    FileLines,
    RecordBatch,
    decode_accumulator,
    decode_batch,
    decode_index_list,
    decode_kept,
    decode_records,
    decode_request,
    encode_accumulator,
    encode_batch,
    encode_index_list,
    encode_kept,
    encode_records,
    encode_request,
    frame_batch,
    line_column,
    records_of,
)

__all__ = [
    "MARK",
    "RESERVED_PARAM_PREFIX",
    "CONTRACT_VERSION",
    "EMPTY_SNAPSHOT",
    "NO_PARSE",
    "FileLines",
    "BatchResult",
    "Dispatcher",
    "InitHook",
    "LateRecordError",
    "LookBackHook",
    "LookBackResult",
    "ParamSpec",
    "PluginDefinition",
    "PluginModule",
    "RecordBatch",
    "StateBounds",
    "WindowState",
    "decode_accumulator",
    "decode_batch",
    "decode_index_list",
    "did_you_mean",
    "decode_kept",
    "decode_records",
    "decode_request",
    "encode_accumulator",
    "encode_batch",
    "encode_index_list",
    "encode_kept",
    "encode_records",
    "encode_request",
    "find_plugin",
    "frame_batch",
    "line_column",
    "loads_json",
    "records_of",
    "resolve_params",
    "window_from_json",
    "window_from_mapping",
]
