"""What a worker does, wherever it runs (a local process or a Ray actor).

A worker loads the pipeline's processors itself, through the same loader the
driver uses (:func:`~dataflare_host.pipeline._assemble.load_processor`, so
``load_plugin``), from the pipeline file; plugins never cross a process
boundary, only records and accumulators do.
"""

from __future__ import annotations

from typing import Any

from dataflare import PluginError
from dataflare_host._text import one_line
from dataflare_host.pipeline._assemble import load_processor
from dataflare_host.pipeline._config import load_pipeline_config
from dataflare_host.pipeline.engines import _wire
from dataflare_host.pipeline.engines._plan import Plan, run_part
from dataflare_host.plugins._chain import OnError

__all__ = ["WorkerCore"]


class WorkerCore:
    """The pipeline's plugins in this process, answering tasks (see :meth:`handle`)."""

    def __init__(self, pipeline_file: str) -> None:
        config, doc = load_pipeline_config(pipeline_file)
        self.stages = [load_processor(p, doc, i) for i, p in enumerate(config.processors)]
        self.plan = Plan.of_stages(self.stages)
        self.on_error: list[OnError] = [
            "stop" if s.config.on_error == "fail" else "continue" for s in self.stages
        ]

    def handle(self, payload: bytes) -> bytes:
        """Answer one task: ``("ok", result...)`` or ``("error", message)``."""
        try:
            return _wire.encode(self._handle(_wire.decode(payload)))
        except PluginError as exc:
            return _wire.encode(("error", one_line(str(exc))))

    def _handle(self, task: tuple[Any, ...]) -> tuple[Any, ...]:
        split = self.plan.split
        plugins = [s.plugin for s in self.stages]
        if task[0] == "spread":
            records = _wire.from_records(task[1])
            result, _, _ = run_part(plugins[:split], self.on_error[:split], records)
            return ("ok", _wire.from_result(result))
        _, wire_records, states, by_key = task
        result, after, after_by_key = run_part(
            plugins[split:],
            self.on_error[split:],
            _wire.from_records(wire_records),
            states=states,
            by_key=by_key,
        )
        return ("ok", _wire.from_result(result), after, after_by_key)

    def close(self) -> None:
        """Close every plugin."""
        for stage in self.stages:
            stage.plugin.close()
