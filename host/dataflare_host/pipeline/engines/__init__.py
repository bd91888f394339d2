"""Where the processor chain runs: in the driver, in local worker processes, or on Ray.

The runner hands batches to an :class:`Engine` and gets results back in
submission order; sources, sinks and checkpoints stay with the runner (the
driver), whatever the engine. Which processors spread across workers and which
run one batch at a time is decided in :mod:`._plan`.

================  =============================================  =========================
``workers: 1``    :class:`InProcessEngine`                       the driver's own thread
``workers: N``    :class:`PoolEngine` + :class:`LocalBackend`    N spawned processes
``engine: ray``   :class:`PoolEngine` + :class:`RayBackend`      N Ray actors
================  =============================================  =========================
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dataflare_host.pipeline._assemble import ProcessorStage
from dataflare_host.pipeline._config import PipelineConfig
from dataflare_host.pipeline._workers_setting import parse_workers
from dataflare_host.pipeline.engines._inprocess import InProcessEngine
from dataflare_host.pipeline.engines._plan import Plan
from dataflare_host.pipeline.engines._pool import Backend, PoolEngine
from dataflare_host.pipeline.engines._protocol import Done, Engine

__all__ = [
    "Backend",
    "Done",
    "Engine",
    "InProcessEngine",
    "Plan",
    "PoolEngine",
    "make_engine",
    "parse_workers",
    "worker_count",
]

def worker_count(config: PipelineConfig) -> int:
    """The pipeline's workers: the top-level count, raised by any processor asking for more."""
    counts = [parse_workers(config.workers)]
    counts += [parse_workers(p.config.workers) for p in config.processors if p.config.workers]
    return max(counts)


def make_engine(
    config: PipelineConfig, pipeline_file: Path, stages: Sequence[ProcessorStage]
) -> Engine:
    """The engine ``config`` asks for (not started)."""
    workers = worker_count(config)
    if config.engine == "ray":
        from dataflare_host.pipeline.engines._ray import RayBackend

        return PoolEngine(stages, RayBackend(pipeline_file, workers, config.address), workers)
    if workers == 1 or not stages:
        return InProcessEngine(stages)
    from dataflare_host.pipeline.engines._local import LocalBackend

    return PoolEngine(stages, LocalBackend(pipeline_file, workers), workers)
