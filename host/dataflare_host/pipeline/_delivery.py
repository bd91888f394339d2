"""``delivery: exactly_once``: pairing a pipeline's source with a sink that commits the
source's positions in the same transaction as its output.

At least once (the default) needs nothing from the connectors: the runner checkpoints
positions after the sinks flushed, and a crash repeats what came after. Exactly once
needs a sink that can make its output and the input positions durable atomically, and
a source whose positions it can commit: today Kafka to Kafka (a transactional producer
committing the consumer's offsets, the read-process-write pattern).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from dataflare import ConfigurationError
from dataflare_host.connectors import Position, Sink, Source
from dataflare_host.pipeline._config import PipelineConfig
from dataflare_host.pipeline._yaml import LocatedYaml

__all__ = ["TransactionalSink", "pair_exactly_once"]


@runtime_checkable
class TransactionalSink(Protocol):
    """A sink whose ``flush`` commits its output and a source's position in one transaction."""

    def pair(self, source: Source, transactional_id: str) -> None:
        """Commit ``source``'s positions with the output (raise ConfigurationError for a
        source it cannot); ``transactional_id`` is stable per pipeline and sink."""

    def stage_position(self, position: Position | None) -> None:
        """The source position that the next ``flush`` commits with the output."""


def pair_exactly_once(
    config: PipelineConfig,
    doc: LocatedYaml,
    sources: Sequence[Source],
    sinks: Sequence[Sink],
) -> list[tuple[str, TransactionalSink]]:
    """The (source id, sink) pairs whose positions each flush commits; none at least once.

    Raises a located one-line error when the pipeline cannot be exactly once: it
    needs one source and one sink that commits that source's positions, and no
    ``dead_letter:`` (a second sink outside the transaction).
    """
    if config.delivery != "exactly_once":
        return []
    named = ", ".join(
        [f"source {e.id!r} ({e.config.connector})" for e in config.sources]
        + [f"sink {e.id!r} ({e.config.connector})" for e in config.sinks]
    )
    refusal = (
        f"exactly_once needs one kafka source and one kafka sink (Kafka transactions commit "
        f"the output and the input offsets together), not {named}; use delivery: at_least_once"
    )
    if len(sources) != 1 or len(sinks) != 1 or not isinstance(sinks[0], TransactionalSink):
        raise doc.error(("delivery",), refusal)
    if config.dead_letter is not None:
        raise doc.error(
            ("delivery",),
            "exactly_once cannot include a dead_letter: sink (its writes are outside the "
            "transaction); remove dead_letter: or use delivery: at_least_once",
        )
    sink = sinks[0]
    try:
        sink.pair(sources[0], f"dataflare.{config.name}.{config.sinks[0].id}")
    except ConfigurationError:
        raise doc.error(("delivery",), refusal) from None
    return [(config.sources[0].id, sink)]
