"""Prometheus metrics of a running pipeline, served over HTTP (``dataflare run --metrics-port``).

A :class:`MetricsServer` is a progress reporter: the pipeline hands it the stage
counters a few times a second, and a scrape reads the latest ones. Each server
has its own registry (two pipelines in one process never share metrics), binds
to loopback unless told otherwise, and stays up until closed, so a final scrape
sees exactly the summary's counters.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dataflare_host._closing import Closing
from dataflare_host.pipeline._runner import RunSummary
from dataflare_host.pipeline._stats import StageStats

__all__ = ["MetricsServer"]

_COUNTERS = (
    ("records_in", "Records a stage received"),
    ("records_out", "Records a stage produced (a source: records read)"),
    ("filtered", "Records a filter-like stage dropped"),
    ("errored", "Records a stage failed on"),
    ("reloads", "Hot reloads of a processor"),
)


class MetricsServer(Closing, Collector):
    """Serves ``/metrics`` with per-stage counters and rates, labelled by stage and role.

    >>> server = MetricsServer(0)  # doctest: +SKIP
    >>> pipeline.run(server); server.close()  # doctest: +SKIP
    """

    def __init__(self, port: int, host: str = "127.0.0.1", pipeline: str = "pipeline") -> None:
        self.pipeline = pipeline
        self._stats: list[StageStats] = []
        self._status = "running"
        self._lock = threading.Lock()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
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
        labels = ["pipeline", "stage", "role"]
        for name, help_text in _COUNTERS:
            family = CounterMetricFamily(f"dataflare_{name}", help_text, labels=labels)
            for stage in stats:
                family.add_metric([self.pipeline, stage.stage, stage.role], getattr(stage, name))
            yield family
        rate = GaugeMetricFamily(
            "dataflare_records_per_second", "A stage's rate since it started", labels=labels
        )
        for stage in stats:
            rate.add_metric([self.pipeline, stage.stage, stage.role], stage.rate())
        yield rate
        running = GaugeMetricFamily(
            "dataflare_running", "1 while the pipeline runs", labels=["pipeline"]
        )
        running.add_metric([self.pipeline], 1.0 if status == "running" else 0.0)
        yield running

    def close(self) -> None:
        """Stop serving (safe to call twice)."""
        self._server.shutdown()
        self._server.server_close()
