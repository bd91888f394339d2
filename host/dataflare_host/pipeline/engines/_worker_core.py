"""What a worker does, wherever it runs (a local process or a Ray actor).

A worker loads the pipeline's processors itself, through the same loader the
driver uses (:func:`~dataflare_host.pipeline._assemble.load_processor`, so
``load_plugin``), from the pipeline file; plugins never cross a process
boundary, only records and accumulators do.
"""

from __future__ import annotations

import gc
from typing import Any

from dataflare import PluginError, SerializationError
from dataflare_host._text import one_line
from dataflare_host.pipeline._assemble import load_processor
from dataflare_host.pipeline._config import load_pipeline_config
from dataflare_host.pipeline.engines import _wire
from dataflare_host.pipeline.engines._plan import Plan, run_part
from dataflare_host.plugins._chain import OnError

__all__ = ["WorkerCore"]

_MAX_GC_THRESHOLD = 100_000


class WorkerCore:
    """The pipeline's plugins in this process, answering tasks (see :meth:`handle`)."""

    def __init__(self, pipeline_file: str) -> None:
        config, doc = load_pipeline_config(pipeline_file)
        self.batch_size = config.batch.size
        self.stages = [load_processor(p, doc, i) for i, p in enumerate(config.processors)]
        self.plan = Plan.of_stages(self.stages)
        self.on_error: list[OnError] = [
            "stop" if s.config.on_error == "fail" else "continue" for s in self.stages
        ]

    def handle(self, payload: bytes) -> bytes:
        """Answer one task: ``("ok", result...)``, ``("error", message)``, or
        ``("source-error", message)`` when a source's deferred records are not what the
        source accepts (a JSONL line that is not JSON)."""
        try:
            return _wire.encode(self._handle(_wire.decode(payload)))
        except PluginError as exc:
            return _wire.encode(("error", one_line(str(exc))))

    def _handle(self, task: tuple[Any, ...]) -> tuple[Any, ...]:
        split = self.plan.split
        plugins = [s.plugin for s in self.stages]
        if task[0] == "spread":
            try:
                records = _wire.land_batch(task[1])
            except SerializationError as exc:
                return ("source-error", str(exc))
            result, _, _ = run_part(plugins[:split], self.on_error[:split], records)
            return ("ok", _wire.from_result(result))
        _, wire_records, states, by_key = task
        result, after, after_by_key = run_part(
            plugins[split:],
            self.on_error[split:],
            _wire.unframe_records(wire_records),
            states=states,
            by_key=by_key,
        )
        return ("ok", _wire.from_result(result), after, after_by_key)

    def settle_gc(self) -> None:
        """In a process of its own, once the plugins are loaded: collect per few batches,
        not per few hundred records, and never walk what loading left behind again.

        As in the driver (``collect_per_batches`` in ``_gc_pacing``): a batch's records
        live until the batch is answered, and at the default threshold each batch
        sets off several collections that walk them all.
        """
        gc.collect()
        gc.freeze()
        threshold = gc.get_threshold()
        wanted = max(threshold[0], min(_MAX_GC_THRESHOLD, 16 * self.batch_size))
        gc.set_threshold(wanted, *threshold[1:])

    def close(self) -> None:
        """Close every plugin."""
        for stage in self.stages:
            stage.plugin.close()
