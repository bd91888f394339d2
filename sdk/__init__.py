"""DataFlare plugins SDK: write a data-pipeline plugin as one decorated function.

>>> import sdk
>>> @sdk.map
... def upper(record):
...     return record.evolve(value=record.value.upper())
>>> upper(sdk.Record(b"hi")).value
b'HI'

The decorators (``filter``, ``map``, ``filter_map``, ``array_map``, ``aggregate``,
``init``, ``look_back``) mark the function and return it unchanged. The host finds the marked
function in the plugin file and runs it through :class:`Dispatcher`, natively
or inside a WebAssembly component.
"""

from ._codec import FORMAT_VERSION, decode_batch, encode_batch
from ._decorators import aggregate, array_map, filter, filter_map, init, look_back, map
from ._definition import (
    InitHook,
    LookBackHook,
    ParamSpec,
    PluginDefinition,
    PluginModule,
    find_plugin,
)
from ._dispatch import BatchResult, Dispatcher, LookBackResult
from ._errors import (
    ConfigurationError,
    LimitExceededError,
    PluginError,
    PluginIOError,
    ProcessingError,
    SerializationError,
)
from ._kinds import AggregateEmit, PluginKind
from ._record import Record
from ._windows import Window, sliding, tumbling

__all__ = [
    "FORMAT_VERSION",
    "AggregateEmit",
    "BatchResult",
    "ConfigurationError",
    "Dispatcher",
    "InitHook",
    "LimitExceededError",
    "LookBackHook",
    "LookBackResult",
    "ParamSpec",
    "PluginDefinition",
    "PluginError",
    "PluginIOError",
    "PluginKind",
    "PluginModule",
    "ProcessingError",
    "Record",
    "SerializationError",
    "Window",
    "aggregate",
    "array_map",
    "decode_batch",
    "encode_batch",
    "filter",
    "filter_map",
    "find_plugin",
    "init",
    "look_back",
    "map",
    "sliding",
    "tumbling",
]

__version__ = "0.1.0"
