"""Prometheus metrics of a running pipeline, served over HTTP (``dataflare run --metrics-port``).

A :class:`MetricsServer` is a progress reporter: the pipeline hands it the stage
counters a few times a second, and a scrape reads the latest ones. Each server
has its own registry (two pipelines in one process never share metrics), binds
to loopback unless told otherwise, and stays up until closed, so a final scrape
sees exactly the summary's counters.

Names follow Prometheus' conventions: counters end in ``_total``, durations
are in seconds (``_seconds``), sizes in bytes (``_bytes``); the standard
``process_*`` and ``python_gc_*`` families come from prometheus-client's own
collectors.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from dataflare_host._closing import Closing
from dataflare_host.pipeline._runner import RunHealth, RunSummary
from dataflare_host.pipeline._stats import Histogram, StageStats

__all__ = ["MetricsServer"]

_COUNTERS = (
    ("records_in", "Records a stage received"),
    ("records_out", "Records a stage produced (a source: records read)"),
    ("filtered", "Records a filter-like stage dropped"),
    ("errored", "Records a stage failed on"),
    ("reloads", "Hot reloads of a processor"),
)
_LABELS = ["pipeline", "stage", "role"]


class MetricsServer(Closing, Collector):
    """Serves ``/metrics`` with per-stage counters, rates, latencies and backlog.

    ``health`` (:meth:`Pipeline.health`) adds the checkpoint's age and the sinks'
    retries; without it those families are left out.

    >>> server = MetricsServer(0)  # doctest: +SKIP
    >>> pipeline.run(server); server.close()  # doctest: +SKIP
    """

    def __init__(
        self,
        port: int,
        host: str = "127.0.0.1",
        pipeline: str = "pipeline",
        health: Callable[[], RunHealth] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self._health = health
        self._stats: list[StageStats] = []
        self._status = "running"
        self._lock = threading.Lock()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        # The standard families (CPU seconds, resident memory, open descriptors, GC):
        # what every Prometheus target exposes, so dashboards find them by name.
        ProcessCollector(registry=registry)
        GCCollector(registry=registry)
        self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        self.port = self._server.server_port

    def update(self, stats: Sequence[StageStats]) -> None:
        """Keep the latest counters for the next scrape."""
        with self._lock:
            self._stats = list(stats)

    def finish(self, summary: RunSummary) -> None:
        """Keep the final counters (a scrape now matches the summary exactly)."""
        with self._lock:
            self._stats = list(summary.stats)
            self._status = summary.status

    def collect(self) -> Iterator[Metric]:
        """The metrics of the latest counters (called by the registry at each scrape)."""
        with self._lock:
            stats, status = list(self._stats), self._status
        for name, help_text in _COUNTERS:
            family = CounterMetricFamily(f"dataflare_{name}", help_text, labels=_LABELS)
            for stage in stats:
                family.add_metric(self._labels(stage), getattr(stage, name))
            yield family
        rate = GaugeMetricFamily(
            "dataflare_records_per_second", "A stage's rate since it started", labels=_LABELS
        )
        for stage in stats:
            rate.add_metric(self._labels(stage), stage.rate())
        yield rate
        yield self._histogram(
            "dataflare_stage_batch_duration_seconds",
            "Seconds a stage took per batch: a source's read, a processor's plugin, a sink's write",
            [(s, s.batch_seconds) for s in stats if s.role != "worker"],
        )
        yield self._histogram(
            "dataflare_record_latency_seconds",
            "Seconds from a record's timestamp to its write by a sink (each batch's first "
            "record; only records with a timestamp)",
            [(s, s.record_latency) for s in stats if s.role == "sink"],
        )
        yield from self._backlog(stats)
        dead = CounterMetricFamily(
            "dataflare_dead_letter_records",
            "Records written to the dead-letter sink",
            labels=_LABELS,
        )
        for stage in stats:
            if stage.role == "dead_letter":
                dead.add_metric(self._labels(stage), stage.records_in)
        yield dead
        restarts = CounterMetricFamily(
            "dataflare_worker_restarts",
            "Times a worker process (or Ray actor) died and was started again",
            labels=["pipeline", "worker"],
        )
        for stage in stats:
            if stage.role == "worker":
                restarts.add_metric([self.pipeline, stage.stage], stage.restarts)
        yield restarts
        if self._health is not None:
            yield from self._health_families(self._health())
        running = GaugeMetricFamily(
            "dataflare_running", "1 while the pipeline runs", labels=["pipeline"]
        )
        running.add_metric([self.pipeline], 1.0 if status == "running" else 0.0)
        yield running

    def _labels(self, stage: StageStats) -> list[str]:
        return [self.pipeline, stage.stage, stage.role]

    def _histogram(
        self, name: str, help_text: str, stages: list[tuple[StageStats, Histogram]]
    ) -> HistogramMetricFamily:
        family = HistogramMetricFamily(name, help_text, labels=_LABELS)
        for stage, histogram in stages:
            counts, total = histogram.snapshot()
            buckets: list[tuple[str, float]] = []
            running = 0
            for bound, count in zip(histogram.bounds, counts, strict=False):
                running += count
                buckets.append((_bound(bound), running))
            buckets.append(("+Inf", running + counts[-1]))
            family.add_metric(self._labels(stage), buckets, total)
        return family

    def _backlog(self, stats: list[StageStats]) -> Iterator[Metric]:
        remaining = GaugeMetricFamily(
            "dataflare_source_remaining_bytes",
            "Input bytes a source has not read yet (file sources)",
            labels=_LABELS,
        )
        lag = GaugeMetricFamily(
            "dataflare_source_lag_offsets",
            "Offsets a source is behind the end of its log (log sources that know it)",
            labels=_LABELS,
        )
        partition_lag = GaugeMetricFamily(
            "dataflare_source_partition_lag_offsets",
            "Offsets a partitioned log source is behind the end of each partition",
            labels=[*_LABELS, "partition"],
        )
        partition_position = GaugeMetricFamily(
            "dataflare_source_partition_position_offsets",
            "The next offset a partitioned log source reads in each partition",
            labels=[*_LABELS, "partition"],
        )
        for stage in stats:
            backlog = stage.backlog if stage.role == "source" else None
            if backlog is not None:
                family = remaining if backlog.unit == "bytes" else lag
                family.add_metric(self._labels(stage), backlog.amount)
                for part in backlog.partitions:
                    labels = [*self._labels(stage), part.partition]
                    partition_lag.add_metric(labels, part.lag)
                    partition_position.add_metric(labels, part.position)
        yield remaining
        yield lag
        yield partition_lag
        yield partition_position

    def _health_families(self, health: RunHealth) -> Iterator[Metric]:
        now = time.time()
        age = GaugeMetricFamily(
            "dataflare_checkpoint_age_seconds",
            "Seconds since the last committed checkpoint (before the first: since the run "
            "started); what a restart would read again grows with it",
            labels=["pipeline"],
        )
        age.add_metric([self.pipeline], now - (health.checkpointed_at or health.started_at))
        yield age
        last = GaugeMetricFamily(
            "dataflare_last_checkpoint_timestamp_seconds",
            "When the last checkpoint was committed (Unix time; NaN before the first)",
            labels=["pipeline"],
        )
        last.add_metric(
            [self.pipeline],
            health.checkpointed_at if health.checkpointed_at is not None else math.nan,
        )
        yield last
        retries = CounterMetricFamily(
            "dataflare_sink_retries",
            "Writes a sink retried after a transient failure (429/5xx, a timeout)",
            labels=["pipeline", "stage"],
        )
        for stage, count in health.retries.items():
            retries.add_metric([self.pipeline, stage], count)
        yield retries

    def close(self) -> None:
        """Stop serving (safe to call twice)."""
        self._server.shutdown()
        self._server.server_close()


def _bound(value: float) -> str:
    """A bucket bound as Prometheus writes one (``0.5``, ``1.0``, ``60.0``)."""
    return repr(float(value))
