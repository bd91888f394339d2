"""Plugins as the host sees them: one interface, one loader, and chains of them.

:func:`load_plugin` is the only code that turns a reference (a ``.py`` file, a
``.wasm`` component, a ``.py`` built on demand for the sandbox, a plugin name,
an entry point, a decorated function or module) into a running :class:`Plugin`.
Nothing else in the host constructs a backend, so every caller (pipelines, the
CLI, the test kit) gets the same choice, the same build cache and the same
staleness rule. The backends sit side by side: ``_native`` runs a plugin in
this process, ``_wasm`` (:class:`WasmPlugin`) runs a component in a sandbox
process (:mod:`dataflare_host.wasm.sandbox`).
"""

from typing import TYPE_CHECKING

from dataflare_host._lazy import lazy_attributes as _lazy_attributes
from dataflare_host.plugins._chain import Chain, ChainResult, OnError, StepReport
from dataflare_host.plugins._interface import Begun, Plugin
from dataflare_host.plugins._loader import PLUGIN_GROUP, Runtime, load_plugin

if TYPE_CHECKING:
    from dataflare_host.plugins._wasm import WasmPlugin

__all__ = [
    "PLUGIN_GROUP",
    "Begun",
    "Chain",
    "ChainResult",
    "OnError",
    "Plugin",
    "Runtime",
    "StepReport",
    "WasmPlugin",
    "load_plugin",
]

# Lazy: the WASM backend loads the SDK's wire codecs and the sandbox's host side,
# which a native-only host never needs.
__getattr__ = _lazy_attributes(__name__, {"WasmPlugin": "_wasm"})
