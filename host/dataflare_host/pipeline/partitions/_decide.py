"""Whether a pipeline reads its source in its workers, and when not, why.

Reading where the chain runs needs: one source with partitions; a chain with no
state (an aggregate or declared state is exchanged by key between workers, so
such a chain reads in the driver); and sinks that each worker can write
(:class:`SplitSink` or :class:`SharedSink`; exactly once, each worker's Kafka
transactions are its own). A pipeline that could but for one of these reads in the
driver, and the log says which one stands in the way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import attrs

from dataflare import PluginError, PluginKind
from dataflare_host.connectors import PartitionedSource, SharedSink, Sink, Source, SplitSink
from dataflare_host.pipeline._assemble import ProcessorStage
from dataflare_host.pipeline._config import PipelineConfig
from dataflare_host.pipeline._errors import PipelineError
from dataflare_host.pipeline._yaml import LocatedYaml

__all__ = ["PartitionReading", "partition_reading", "refuse_split_sinks"]

log = logging.getLogger("dataflare.pipeline")


@attrs.frozen
class PartitionReading:
    """How a pipeline reads its source's ``partitions``: ``workers`` of kind ``where``
    (``local`` processes, ``ray`` actors, or ``thread``: one, in the driver);
    ``one_each``: a task is one partition (they end, or a sink splits by partition)."""

    source_id: str
    source: PartitionedSource
    partitions: tuple[str, ...]
    workers: int
    where: Literal["local", "ray", "thread"]
    one_each: bool


def partition_reading(
    config: PipelineConfig,
    sources: Sequence[Source],
    sinks: Sequence[tuple[str, Sink]],
    processors: Sequence[ProcessorStage],
    workers: int,
) -> PartitionReading | None:
    """How ``config`` reads in workers, or None when it reads in the driver.

    ``sinks`` names every sink, the dead letter's included. Asks the source for its
    partitions (a topic's: from the broker); what that raises comes back as a
    :class:`PipelineError` naming the source, as a failed connect would. Also raises
    one when a sink splits by partition (``{partition}`` in a file sink's path) and the
    pipeline cannot read in workers: one line saying why.
    """
    splitting = _splitting(sinks)
    ray = config.engine == "ray"
    if not (workers > 1 or ray or splitting):
        return None
    why = _why_not(config, sources, sinks, processors)
    source = sources[0] if sources else None
    names: list[str] = []
    if why is None:
        assert isinstance(source, PartitionedSource)
        try:
            names = source.partitions()
        except PluginError as exc:  # a broker down, a topic missing: as connecting says it
            raise PipelineError(f"source {config.sources[0].id!r}: {exc}") from exc
        if splitting and not source.partitions_end():
            why = "its partitions do not end (a file per partition needs partitions that end)"
        elif len(names) < 2 and not splitting:
            why = f"it has {len(names)} partition (the workers share the chain instead)"
    if why is not None:
        if splitting:
            raise PipelineError(_split_refusal(splitting[0], why))
        if isinstance(source, PartitionedSource):
            log.info("reading source %r in the driver: %s", config.sources[0].id, why)
        return None
    assert isinstance(source, PartitionedSource)
    where: Literal["local", "ray", "thread"] = (
        "ray" if ray else "local" if workers > 1 else "thread"
    )
    one_each = source.partitions_end() or bool(splitting)
    return PartitionReading(config.sources[0].id, source, tuple(names), workers, where, one_each)


def refuse_split_sinks(
    config: PipelineConfig,
    doc: LocatedYaml,
    sources: Sequence[Source],
    sinks: Sequence[tuple[str, Sink]],
    processors: Sequence[ProcessorStage],
) -> None:
    """When the pipeline is loaded (``validate`` too): a sink with ``{partition}`` in its
    path in a pipeline that cannot read in workers whatever its input is a located
    ConfigurationError, the line :func:`partition_reading` would fail the run with."""
    splitting = _splitting(sinks)
    if not splitting:
        return
    why = _why_not(config, sources, sinks, processors)
    if why is None:
        return
    ids = [entry.id for entry in config.sinks]
    where = ("sinks", ids.index(splitting[0])) if splitting[0] in ids else ("dead_letter",)
    raise doc.error((*where, "config", "connection", "path"), _split_refusal(splitting[0], why))


def _splitting(sinks: Sequence[tuple[str, Sink]]) -> list[str]:
    """The sinks that write a file per partition (``{partition}`` in their path)."""
    return [name for name, sink in sinks if isinstance(sink, SplitSink) and sink.splits()]


def _split_refusal(sink: str, why: str) -> str:
    """The one line refusing sink ``sink``'s file per partition, ``why`` it cannot be."""
    return (
        f"sink {sink!r} writes a file per partition ({{partition}} in its path), but this "
        f"pipeline cannot read its source in workers: {why}"
    )


def _why_not(
    config: PipelineConfig,
    sources: Sequence[Source],
    sinks: Sequence[tuple[str, Sink]],
    processors: Sequence[ProcessorStage],
) -> str | None:
    """Why this pipeline reads in the driver (None: nothing stands in the way)."""
    if len(sources) != 1:
        return f"it has {len(sources)} sources (workers read the partitions of one)"
    if not isinstance(sources[0], PartitionedSource):
        return f"source {config.sources[0].id!r} has no partitions"
    for stage in processors:
        if stage.plugin.kind is PluginKind.AGGREGATE or stage.plugin.state_bounds is not None:
            return f"processor {stage.id!r} keeps state, exchanged by key between workers"
        if stage.config.look_back is not None:
            return f"processor {stage.id!r} warms up with look_back"
    for name, sink in sinks:
        if isinstance(sink, SplitSink) and sink.splits():
            continue
        if isinstance(sink, SharedSink) and sink.takes_concurrent_writers():
            continue
        hint = " (put {partition} in its path)" if isinstance(sink, SplitSink) else ""
        return f"sink {name!r} takes one writer{hint}"
    return None
