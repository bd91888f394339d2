"""Reading where the chain runs: workers read a partitioned source's partitions themselves.

With one source that has partitions (a glob's files, a Kafka topic's partitions),
a stateless chain and sinks each worker can write, a pipeline with ``workers: N``
or ``engine: ray`` does not read in its driver: each worker (a process or a Ray
actor) reads the partitions it is given, runs the chain and writes the sinks,
and reports each partition's position when it checkpoints; the driver only
assigns partitions, keeps the one checkpoint and replaces a worker that died.

===============  ==========================================================
``_decide``      whether a pipeline reads in its workers, and why not
``_driver``      the driver's loop: tasks out, reports in, the checkpoint
``_task_run``    a task's run, where its partitions are read
``_slots``       worker processes, Ray actors, or a thread of the driver
``_messages``    tasks, reports and log lines between driver and workers
===============  ==========================================================
"""

from __future__ import annotations

from dataflare_host.pipeline.partitions._decide import (
    PartitionReading,
    partition_reading,
    refuse_split_sinks,
)
from dataflare_host.pipeline.partitions._driver import PartitionedRun, Slots
from dataflare_host.pipeline.partitions._messages import Report, Task
from dataflare_host.pipeline.partitions._slots import make_slots
from dataflare_host.pipeline.partitions._task_run import PipelineForTask, TaskPipelineMaker, TaskRun

__all__ = [
    "PartitionReading",
    "PartitionedRun",
    "PipelineForTask",
    "Report",
    "Slots",
    "Task",
    "TaskPipelineMaker",
    "TaskRun",
    "make_slots",
    "partition_reading",
    "refuse_split_sinks",
]
