"""A Python plugin's component as the shared runtime plus the plugin's own files.

Runs in the host process. Building a whole component runs componentize-py
(CPython inside WebAssembly, pre-initialised) and then compiles the result
for this host: seconds each, for a CPython and SDK that are the same in
every plugin. The shared runtime is that part, built and compiled once per
host and contract (:func:`~._componentize.runtime_key`); a plugin's component is its bytes
followed by the plugin's files (:mod:`dataflare_host.wasm.sandbox.plugin_sources`),
so a new plugin costs a copy and a load check, and its first run maps the
runtime's compiled artifact.

A plugin the runtime cannot load (one importing a standard module outside
:data:`~._componentize.SHARED_STDLIB`, a broken one) is built whole instead,
which also gives a broken plugin's error its usual words.
"""

from __future__ import annotations

from pathlib import Path

from dataflare import PluginError
from dataflare_host._ownership import write_private
from dataflare_host.wasm.build._componentize import plugin_sources
from dataflare_host.wasm.sandbox.host._instance import Instance
from dataflare_host.wasm.sandbox.host._limits import SandboxLimits
from dataflare_host.wasm.sandbox.host._trap import Trap
from dataflare_host.wasm.sandbox.plugin_sources import append_sources

__all__ = ["assemble"]


def assemble(runtime: Path, source: Path, target: Path) -> bool:
    """Write the plugin at ``source`` into ``target`` as ``runtime`` plus its files.

    True when the component loads and describes itself in a sandbox (the plugin is
    found, its imports are all there); False, with ``target`` removed, when it does
    not and must be built whole.
    """
    # As a whole build's: no one else may write it.
    write_private(target, append_sources(runtime.read_bytes(), plugin_sources(source)))
    if _loads(target, source):
        return True
    target.unlink(missing_ok=True)
    return False


def _loads(component: Path, source: Path) -> bool:
    try:
        # Quiet: a plugin the runtime cannot load is built whole, which says why.
        instance = Instance(component, SandboxLimits(), f"plugin {source.name}", show_output=False)
    except PluginError:
        return False
    try:
        instance.call("describe")
    except (Trap, PluginError):
        return False
    finally:
        instance.close()
    return True
