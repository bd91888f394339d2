"""The slots a partitioned run's tasks run in, by where the pipeline asks for them."""

from __future__ import annotations

import logging

from dataflare_host.pipeline.partitions._decide import PartitionReading
from dataflare_host.pipeline.partitions._driver import Slots
from dataflare_host.pipeline.partitions._task_run import TaskPipelineMaker

__all__ = ["make_slots"]


def make_slots(
    reading: PartitionReading, pipeline_file: str, make: TaskPipelineMaker, address: str | None
) -> Slots:
    """Worker processes, Ray actors (joining Ray at ``address``) or a thread; the first two
    send up the lines they log at the driver's level and above."""
    level = logging.getLogger().getEffectiveLevel()
    if reading.where == "ray":
        from dataflare_host.pipeline.partitions._actors import ActorSlots

        return ActorSlots(pipeline_file, reading.workers, make, level, address)
    if reading.where == "local":
        from dataflare_host.pipeline.partitions._processes import ProcessSlots

        return ProcessSlots(pipeline_file, reading.workers, make, level)
    from dataflare_host.pipeline.partitions._threads import ThreadSlots

    return ThreadSlots(pipeline_file, reading.workers, make)
