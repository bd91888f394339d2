"""Look-back warm-up: replaying recent records into processors before the run starts."""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Mapping, Sequence

from dataflare import Record
from dataflare_host.connectors import Source
from dataflare_host.pipeline._assemble import ProcessorStage
from dataflare_host.pipeline._checkpoint import Checkpoint
from dataflare_host.pipeline._dead_letter import describe
from dataflare_host.pipeline._errors import PipelineError

__all__ = ["warm_up"]

log = logging.getLogger("dataflare.pipeline")

_CATCH_UP_LINGER_S = 0.05


def warm_up(
    processors: Sequence[ProcessorStage],
    look_back_sources: Mapping[str, Source],
    checkpoint: Checkpoint,
    batch_size: int,
) -> dict[str, list[Record]]:
    """Run look-back for processors the checkpoint holds no state for.

    Returns the records each warmed processor learned, by stage id, so that a
    hot-reloaded version can be taught them too. Raises :class:`PipelineError`
    when a processor's look-back hook fails.
    """
    warmed: dict[str, list[Record]] = {}
    for index, stage in enumerate(processors):
        source = look_back_sources.get(stage.id)
        look_back = stage.config.look_back
        # Checkpointed state already holds what look-back would teach: replaying
        # it on top would count those records twice.
        saved = stage.id in checkpoint.accumulators or stage.id in checkpoint.states
        if source is None or look_back is None or saved:
            continue
        records = _look_back_records(source, look_back.last, look_back.age_ms, batch_size)
        result = stage.plugin.look_back(records)
        if result.error is not None:
            failed = records[result.consumed] if result.consumed < len(records) else None
            raise PipelineError(
                f"processor {stage.id!r}: look_back failed: {result.error}{describe(failed)}"
            )
        warmed[stage.id] = records
        log.info(
            "processor %r (#%d) warmed up on %d look-back record(s)",
            stage.id,
            index,
            len(records),
        )
    return warmed


def _look_back_records(
    source: Source, last: int | None, age_ms: int | None, batch_size: int
) -> list[Record]:
    """The warm-up records: the last N, or those at most ``age_ms`` old, oldest first."""
    kept: collections.deque[Record] = collections.deque(maxlen=last)
    cutoff = int(time.time() * 1000) - age_ms if age_ms is not None else None
    source.connect(None)
    try:
        while True:
            batch = source.read(batch_size, _CATCH_UP_LINGER_S)
            if batch is None or not batch.records:  # exhausted, or caught up for now
                break
            for record in batch.records:
                if cutoff is None or (record.timestamp is not None and record.timestamp >= cutoff):
                    kept.append(record)
    finally:
        source.close()
    return list(kept)
