"""DataFlare plugins SDK: write a data-pipeline plugin as one decorated function.

>>> import sdk
>>> @sdk.map
... def upper(record):
...     return record.evolve(value=record.value.upper())
>>> upper(sdk.Record(b"hi")).value
b'HI'

The decorators (``filter``, ``map``, ``filter_map``, ``array_map``, ``aggregate``,
``init``) mark the function and return it unchanged. The host finds the marked
function in the plugin file and runs it through :class:`Dispatcher`, natively
or inside a WebAssembly component.
"""

from ._codec import FORMAT_VERSION, decode_batch, encode_batch
from ._decorators import aggregate, array_map, filter, filter_map, init, map
from ._definition import InitHook, ParamSpec, PluginDefinition, PluginModule, find_plugin
from ._dispatch import BatchResult, Dispatcher
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

__all__ = [
    "FORMAT_VERSION",
    "AggregateEmit",
    "BatchResult",
    "ConfigurationError",
    "Dispatcher",
    "InitHook",
    "LimitExceededError",
    "ParamSpec",
    "PluginDefinition",
    "PluginError",
    "PluginIOError",
    "PluginKind",
    "PluginModule",
    "ProcessingError",
    "Record",
    "SerializationError",
    "aggregate",
    "array_map",
    "decode_batch",
    "encode_batch",
    "filter",
    "filter_map",
    "find_plugin",
    "init",
    "map",
]

__version__ = "0.1.0"
