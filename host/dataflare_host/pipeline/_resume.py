"""What a run resumes from: the checkpoint, checked against the pipeline before anything
connects, with the plugins' saved state put back."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from dataflare import PluginError, PluginKind
from dataflare_host.connectors import PartitionedSource, PartitionPositions, Source
from dataflare_host.pipeline._assemble import ProcessorStage
from dataflare_host.pipeline._checkpoint import Checkpoint, CheckpointStore
from dataflare_host.pipeline._config import ConnectorEntry

__all__ = ["checked_checkpoint"]

log = logging.getLogger("dataflare.pipeline")


def checked_checkpoint(
    store: CheckpointStore,
    sources: Sequence[tuple[ConnectorEntry, Source]],
    processors: Sequence[ProcessorStage],
) -> Checkpoint:
    """The checkpoint in ``store``, checked against the pipeline's sources and processors.

    Each source checks its own position (:meth:`Source.check_position`) and
    each aggregate's state is tried on an empty batch, so a checkpoint from
    another pipeline, connector or plugin version (say an aggregate that
    gained a window) fails here, in one line naming the file and --reset.
    Each plugin's declared state is then restored as the checkpoint saved it.
    """
    checkpoint = store.load()
    for entry, source in sources:
        if entry.id not in checkpoint.positions:
            continue
        position = checkpoint.positions[entry.id]
        by_partition = PartitionPositions.from_json(position)
        # Taken by workers reading the partitions: each partition's is the source's own.
        each = [position] if by_partition is None else list(by_partition.at.values())
        try:
            if by_partition is not None and not isinstance(source, PartitionedSource):
                raise PluginError(f"{repr(position)[:80]} is a partitioned source's position")
            for one in each:
                if one is not None:
                    source.check_position(one)
        except PluginError as exc:
            raise store.unusable(f"source {entry.id!r}: {exc}") from exc
    for stage in processors:
        # Only an aggregate carries state; a stage that no longer is one drops it.
        if stage.id not in checkpoint.accumulators:
            continue
        if stage.plugin.kind is not PluginKind.AGGREGATE:
            log.warning(
                "processor %r is not an aggregate: ignoring its state in %s",
                stage.id,
                store.path,
            )
            continue
        saved = checkpoint.accumulators[stage.id]
        stage.plugin.accumulator = saved
        try:
            failure: BaseException | None = stage.plugin.process([]).error
        except Exception as exc:  # noqa: BLE001 - whatever the state breaks is reported
            failure = exc
        stage.plugin.accumulator = saved  # exactly as saved, not as the probe re-encoded it
        if failure is not None:
            raise store.unusable(
                f"processor {stage.id!r} cannot continue from its saved state: "
                f"{type(failure).__name__}: {failure}"
            ) from failure
    _restore_states(store, checkpoint, processors)
    return checkpoint


def _restore_states(
    store: CheckpointStore, checkpoint: Checkpoint, processors: Sequence[ProcessorStage]
) -> None:
    """Put each plugin's declared state back as the checkpoint saved it (before the
    first batch); a processor with saved state that no longer declares any drops it."""
    for stage in processors:
        if stage.id not in checkpoint.states:
            continue
        if stage.plugin.state_bounds is None:
            log.warning(
                "processor %r declares no state: ignoring its state in %s",
                stage.id,
                store.path,
            )
            continue
        try:
            stage.plugin.restore_state(checkpoint.states[stage.id])
        except PluginError as exc:
            raise store.unusable(
                f"processor {stage.id!r} cannot restore its saved state: {exc}"
            ) from exc
