"""WebAssembly components: build a plugin into one, and run it in a sandbox.

Folders say which process runs what:

- :mod:`dataflare_host.wasm.build` runs in the host process: :func:`build_component`
  turns a plugin file into a component with componentize-py, in a child process
  that never runs the plugin on the host, and :func:`component_for` is the build
  cache every caller shares, keyed by the build's inputs (content, not file times);
- :mod:`dataflare_host.wasm.sandbox` runs components: ``protocol`` is what crosses
  between the processes, ``host/`` the host process's side (the limits,
  :class:`SandboxLimits`, the sandbox processes and their instances), ``child/``
  what runs inside a sandbox process (wasmtime and its compile cache), ``server/``
  the fork server that starts sandbox processes.

The WASM backend itself, ``WasmPlugin``, lives beside the native one in
:mod:`dataflare_host.plugins`: this package never imports the plugins package.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from dataflare_host._lazy import lazy_attributes as _lazy_attributes

if TYPE_CHECKING:
    from dataflare_host.wasm.build._cache import component_for
    from dataflare_host.wasm.build._componentize import build_component
    from dataflare_host.wasm.sandbox.host._limits import Sandbox, SandboxLimits

__all__ = ["Sandbox", "SandboxLimits", "build_component", "component_for"]

# Lazy: a sandbox process imports dataflare_host.wasm.sandbox.child._main (so this
# file runs), and should not pay for the build machinery and the host's side.
_package_attribute = _lazy_attributes(
    __name__,
    {
        "Sandbox": "sandbox.host._limits",
        "SandboxLimits": "sandbox.host._limits",
        "build_component": "build._componentize",
        "component_for": "build._cache",
    },
)


def __getattr__(name: str) -> object:
    if name == "WasmPlugin":
        # Moved beside the native backend so that this package never imports
        # plugins/; the old name still works, with a warning.
        warnings.warn(
            "dataflare_host.wasm.WasmPlugin moved: import it from dataflare_host.plugins",
            DeprecationWarning,
            stacklevel=2,
        )
        import importlib

        return importlib.import_module("dataflare_host.plugins").WasmPlugin
    return _package_attribute(name)
