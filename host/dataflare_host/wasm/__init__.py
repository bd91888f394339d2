"""WebAssembly components: build a plugin into one, compile it, run it sandboxed.

- :func:`build_component` turns a plugin file into a component with
  componentize-py, in a child process that never runs the plugin on the host;
- :func:`component_for` is the build cache every caller shares, keyed by the
  build's inputs (content, not file times);
- the engine compiles components once and caches the artifacts on disk;
- :class:`WasmPlugin` runs one behind the host's ``Plugin`` interface, within a
  :class:`Sandbox`'s limits.
"""

from dataflare_host.wasm._build import build_component
from dataflare_host.wasm._build_cache import component_for
from dataflare_host.wasm._plugin import WasmPlugin
from dataflare_host.wasm._sandbox import Sandbox

__all__ = ["Sandbox", "WasmPlugin", "build_component", "component_for"]
