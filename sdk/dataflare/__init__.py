"""DataFlare plugins: write a data-pipeline plugin as one decorated function.

>>> import dataflare
>>> @dataflare.map
... def upper(record):
...     return record.evolve(value=record.value.upper())
>>> upper(dataflare.Record(b"hi")).value
b'HI'

This module is the author's whole surface: the decorators (``filter``, ``map``,
``filter_map``, ``array_map``, ``aggregate``, ``init``, ``look_back``), which mark
the function and return it unchanged; :class:`Record`; the errors; the window
specifications; the kinds; :class:`KeyedState`, a plugin's checkpointed state.
What runs a marked function (natively or inside a WebAssembly component) is
:mod:`dataflare.runtime`, a contract for hosts.
"""

from ._decorators import OPTIONAL, aggregate, array_map, filter, filter_map, init, look_back, map
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
from .runtime._state import KeyedState

__all__ = [
    "OPTIONAL",
    "AggregateEmit",
    "ConfigurationError",
    "KeyedState",
    "LimitExceededError",
    "PluginError",
    "PluginIOError",
    "PluginKind",
    "ProcessingError",
    "Record",
    "SerializationError",
    "Window",
    "aggregate",
    "array_map",
    "filter",
    "filter_map",
    "init",
    "look_back",
    "map",
    "sliding",
    "tumbling",
]

__version__ = "0.2.0"
