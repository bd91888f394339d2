"""The DataFlare host: load plugins (native or WASM), chain them, run pipelines.

Grouped by concept: :mod:`dataflare_host.plugins` (the interface, the one
loader, the native and the WASM backends), :mod:`dataflare_host.wasm` (build,
build cache, and the sandbox: the host's side, the sandbox processes and their
fork server), :mod:`dataflare_host.pipeline` (YAML, assembly, the runner,
checkpoints), :mod:`dataflare_host.connectors`, :mod:`dataflare_host.cli` and
:mod:`dataflare_host.testing` (the plugin author's test kit). Names load on
first use, so ``import dataflare_host`` stays cheap.

>>> from dataflare_host import Chain, load_plugin
>>> from dataflare import Record
>>> chain = Chain([load_plugin("guest_examples/uppercase_map.py")])  # doctest: +SKIP
>>> chain.process([Record(b"hi")]).outputs[0].value  # doctest: +SKIP
b'HI'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataflare_host._lazy import lazy_attributes as _lazy_attributes

if TYPE_CHECKING:
    from dataflare_host.pipeline import (
        Checkpoint,
        CheckpointStore,
        Pipeline,
        PipelineConfig,
        PipelineError,
        ProgressReporter,
        RunSummary,
        StageStats,
        load_pipeline_config,
    )
    from dataflare_host.plugins import Chain, ChainResult, Plugin, WasmPlugin, load_plugin
    from dataflare_host.wasm import Sandbox, SandboxLimits, build_component

__all__ = [
    "Chain",
    "ChainResult",
    "Checkpoint",
    "CheckpointStore",
    "Pipeline",
    "PipelineConfig",
    "PipelineError",
    "Plugin",
    "ProgressReporter",
    "RunSummary",
    "Sandbox",
    "SandboxLimits",
    "StageStats",
    "WasmPlugin",
    "build_component",
    "load_pipeline_config",
    "load_plugin",
]

_PACKAGES = {
    "plugins": ("Chain", "ChainResult", "Plugin", "WasmPlugin", "load_plugin"),
    "wasm": ("Sandbox", "SandboxLimits", "build_component"),
    "pipeline": (
        "Checkpoint",
        "CheckpointStore",
        "Pipeline",
        "PipelineConfig",
        "PipelineError",
        "ProgressReporter",
        "RunSummary",
        "StageStats",
        "load_pipeline_config",
    ),
}
__getattr__ = _lazy_attributes(
    __name__, {name: package for package, names in _PACKAGES.items() for name in names}
)
