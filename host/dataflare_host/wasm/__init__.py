"""WebAssembly components: build a plugin into one, compile it, run it sandboxed.

- :func:`build_component` turns a plugin file into a component with
  componentize-py, in a child process that never runs the plugin on the host;
- :func:`component_for` is the build cache every caller shares, keyed by the
  build's inputs (content, not file times);
- the engine compiles components once and caches the artifacts on disk;
- :class:`WasmPlugin` runs one behind the host's ``Plugin`` interface, within a
  :class:`Sandbox`'s limits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataflare_host._lazy import lazy_attributes as _lazy_attributes

if TYPE_CHECKING:
    from dataflare_host.wasm._build import build_component
    from dataflare_host.wasm._build_cache import component_for
    from dataflare_host.wasm._plugin import WasmPlugin
    from dataflare_host.wasm._sandbox import Sandbox

__all__ = ["Sandbox", "WasmPlugin", "build_component", "component_for"]

# Lazy: a sandbox process imports dataflare_host.wasm._worker, and should not
# pay for the build machinery and the host-side backend it never uses.
__getattr__ = _lazy_attributes(
    __name__,
    {
        "Sandbox": "_sandbox",
        "WasmPlugin": "_plugin",
        "build_component": "_build",
        "component_for": "_build_cache",
    },
)
