"""DataFlare plugins host: load plugins (native or WASM), chain them, run pipelines.

>>> from host import load_plugin, Chain
>>> from sdk import Record
>>> chain = Chain([load_plugin("guest_examples/uppercase_map.py")])  # doctest: +SKIP
>>> chain.process([Record(b"hi")]).outputs[0].value  # doctest: +SKIP
b'HI'
"""

from ._chain import Chain, ChainResult
from ._loader import load_plugin
from ._native import NativePlugin, import_plugin_module
from ._plugin import Plugin

__all__ = [
    "Chain",
    "ChainResult",
    "NativePlugin",
    "Plugin",
    "import_plugin_module",
    "load_plugin",
]
