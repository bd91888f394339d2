"""Choosing a backend for a plugin source: the only place that knows backends exist."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ._native import NativePlugin
from ._plugin import Plugin
from ._wasm import Sandbox, WasmPlugin

__all__ = ["load_plugin"]


def load_plugin(
    source: str | Path,
    params: Mapping[str, str] | None = None,
    *,
    sandbox: Sandbox | None = None,
) -> Plugin:
    """Load a plugin from a ``.py`` file, a ``.wasm`` component or a module name.

    ``sandbox`` sets the limits of a WASM plugin (native plugins run unlimited,
    in-process).

    >>> plugin = load_plugin("guest_examples/uppercase_map.py")  # doctest: +SKIP
    >>> plugin.kind  # doctest: +SKIP
    <PluginKind.MAP: 'map'>
    """
    if str(source).endswith(".wasm"):
        return WasmPlugin(source, params, sandbox)
    return NativePlugin.load(source, params)
