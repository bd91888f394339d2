"""DataFlare plugins host: load plugins (native or WASM), chain them, run pipelines.

>>> from host import load_plugin, Chain
>>> from sdk import Record
>>> chain = Chain([load_plugin("guest_examples/uppercase_map.py")])  # doctest: +SKIP
>>> chain.process([Record(b"hi")]).outputs[0].value  # doctest: +SKIP
b'HI'
"""

from ._build import build_component
from ._chain import Chain, ChainResult
from ._checkpoint import Checkpoint, CheckpointStore
from ._config import PipelineConfig, load_pipeline_config
from ._loader import load_plugin
from ._native import NativePlugin, import_plugin_module
from ._pipeline import Pipeline, PipelineError, ProgressReporter, RunSummary
from ._plugin import Plugin
from ._stats import StageStats
from ._wasm import Sandbox, WasmPlugin

__all__ = [
    "Chain",
    "ChainResult",
    "Checkpoint",
    "CheckpointStore",
    "NativePlugin",
    "Pipeline",
    "PipelineConfig",
    "PipelineError",
    "Plugin",
    "ProgressReporter",
    "RunSummary",
    "Sandbox",
    "StageStats",
    "WasmPlugin",
    "build_component",
    "import_plugin_module",
    "load_pipeline_config",
    "load_plugin",
]
