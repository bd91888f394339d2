"""Run a whole pipeline in memory from a test: Bytewax's testing source/sink, Beam's assert_that.

The pipeline file is the real one (processors, error policies, windows, look-back
settings as written); only its sources and sinks are swapped for in-memory ones,
by id: each source replays a list of records the test gives (timestamps
included, so a windowed aggregate sees exactly the event time the test
chooses), each sink and the dead letter collect what reaches them.

>>> from dataflare import Record
>>> events = [Record(b"x", timestamp=0)]
>>> run_pipeline("pipeline.yaml", {"events": events}).values("out")  # doctest: +SKIP
[b'X']
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from dataflare import ConfigurationError, Record
from dataflare_host.connectors import ConnectorRegistry, Sink, Source, SourceBatch
from dataflare_host.pipeline._config import (
    CheckpointSettings,
    ConnectorConfig,
    ConnectorEntry,
    load_pipeline_config,
)
from dataflare_host.pipeline._runner import Pipeline, RunSummary

__all__ = ["PipelineResult", "run_pipeline"]


@attrs.frozen
class PipelineResult:
    """What an in-memory run produced: every sink's records, the dead letters, the summary."""

    summary: RunSummary
    outputs: Mapping[str, list[Record]]
    """Sink id -> the records it received, in order."""
    dead_letters: list[dict[str, Any]]
    """The dead-letter bodies (``stage``, ``error``, ``record``), parsed."""

    def values(self, sink: str) -> list[bytes]:
        """The values a sink received (the common assertion)."""
        return [record.value for record in self.outputs[sink]]


def run_pipeline(
    pipeline: str | os.PathLike[str],
    inputs: Mapping[str, Sequence[Record]],
    *,
    batch_size: int | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
) -> PipelineResult:
    """Run ``pipeline`` with each source replaced by ``inputs[source id]``, in memory.

    Records keep the offsets the test gives them (default: their position in
    the list). ``batch_size`` overrides the file's batch size (a test can make
    each record its own batch). ``checkpoint`` is where positions and state go
    (default: a temporary file removed afterwards), so a test can run twice to
    check a restart resumes. Raises :class:`ConfigurationError` when ``inputs``
    does not name exactly the pipeline's sources.
    """
    config, doc = load_pipeline_config(Path(pipeline))
    given, wanted = set(inputs), {entry.id for entry in config.sources}
    if given != wanted:
        raise ConfigurationError(
            f"{pipeline}: the pipeline's sources are {sorted(wanted)}, but inputs name "
            f"{sorted(given)}; give one list of records per source id"
        )
    registry = ConnectorRegistry()
    collected: dict[str, list[Record]] = {}
    sources = [
        _swap(entry, registry, _memory_source(inputs[entry.id]), "source")
        for entry in config.sources
    ]
    sinks = []
    for entry in config.sinks:
        collected[entry.id] = []
        sinks.append(_swap(entry, registry, _memory_sink(collected[entry.id]), "sink"))
    dead: list[Record] = []
    dead_letter = (
        _swap(config.dead_letter, registry, _memory_sink(dead), "sink")
        if config.dead_letter is not None
        else None
    )
    batch = config.batch if batch_size is None else attrs.evolve(config.batch, size=batch_size)
    with tempfile.TemporaryDirectory(prefix="dataflare-harness-") as scratch:
        path = Path(checkpoint) if checkpoint is not None else Path(scratch) / "checkpoint.json"
        swapped = attrs.evolve(
            config,
            sources=sources,
            sinks=sinks,
            dead_letter=dead_letter,
            batch=batch,
            checkpoint=CheckpointSettings(str(path.resolve()), config.checkpoint.interval_ms),
        )
        running = Pipeline(swapped, doc, registry)
        try:
            summary = running.run(handle_signals=False)
        finally:
            running.close()
    return PipelineResult(summary, collected, [json.loads(r.value) for r in dead])


def _swap(
    entry: ConnectorEntry, registry: ConnectorRegistry, cls: type[Source] | type[Sink], role: str
) -> ConnectorEntry:
    name = f"harness-{role}:{entry.id}"
    if role == "source":
        registry.register_source(name, cls)  # type: ignore[arg-type]
    else:
        registry.register_sink(name, cls)  # type: ignore[arg-type]
    return attrs.evolve(entry, config=ConnectorConfig(plugin_type=name))


def _memory_source(records: Sequence[Record]) -> type[Source]:
    replay = [
        record if record.offset or index == 0 else attrs.evolve(record, offset=index)
        for index, record in enumerate(records)
    ]

    class MemorySource(Source):
        """Replays the test's records; its position is the index of the next one."""

        def connect(self, position: Any) -> None:
            self._next = int(position) if position is not None else 0

        def read(self, max_records: int, timeout_s: float) -> SourceBatch | None:
            if self._next >= len(replay):
                return None
            chunk = replay[self._next : self._next + max_records]
            self._next += len(chunk)
            return SourceBatch(chunk, self._next)

    return MemorySource


def _memory_sink(into: list[Record]) -> type[Sink]:
    class MemorySink(Sink):
        """Collects what reaches it, in order."""

        def connect(self) -> None:
            """Nothing to open."""

        def write(self, records: Sequence[Record]) -> None:
            into.extend(records)

        def flush(self) -> None:
            """Nothing to make durable."""

    return MemorySink
