"""Plugins as the host sees them: one interface, one loader, and chains of them.

:func:`load_plugin` is the only code that turns a reference (a ``.py`` file, a
``.wasm`` component, a ``.py`` built on demand for the sandbox, a plugin name,
an entry point, a decorated function or module) into a running :class:`Plugin`.
Nothing else in the host constructs a backend, so every caller (pipelines, the
CLI, the test kit) gets the same choice, the same build cache and the same
staleness rule.
"""

from dataflare_host.plugins._chain import Chain, ChainResult, OnError, StepReport
from dataflare_host.plugins._interface import Begun, Plugin
from dataflare_host.plugins._loader import PLUGIN_GROUP, Runtime, load_plugin

__all__ = [
    "PLUGIN_GROUP",
    "Begun",
    "Chain",
    "ChainResult",
    "OnError",
    "Plugin",
    "Runtime",
    "StepReport",
    "load_plugin",
]
