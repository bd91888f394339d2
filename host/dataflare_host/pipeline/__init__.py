"""Pipelines: YAML in, sources -> processor chain -> sinks, at least once.

>>> from dataflare_host.pipeline import Pipeline
>>> Pipeline.from_file("examples/pipeline.yaml").run().status  # doctest: +SKIP
'completed'
"""

from dataflare_host.pipeline._checkpoint import Checkpoint, CheckpointStore
from dataflare_host.pipeline._config import PipelineConfig, load_pipeline_config
from dataflare_host.pipeline._runner import (
    Pipeline,
    PipelineError,
    ProgressReporter,
    RunHealth,
    RunSummary,
)
from dataflare_host.pipeline._stats import StageStats

__all__ = [
    "Checkpoint",
    "CheckpointStore",
    "Pipeline",
    "PipelineConfig",
    "PipelineError",
    "ProgressReporter",
    "RunHealth",
    "RunSummary",
    "StageStats",
    "load_pipeline_config",
]
