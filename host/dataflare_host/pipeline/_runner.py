"""Running a pipeline: sources -> processor chain -> sinks, at least once.

Threads: one reader per source puts batches on a bounded queue (a slow sink
fills it and the readers block: backpressure, flat memory); the main loop runs
the processors and writes every sink, then, at most every checkpoint interval,
flushes the sinks and only then saves the source positions and aggregate state.
Between batches it also swaps in processors whose file changed (hot reload).
"""

from __future__ import annotations

import collections
import json
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Literal, Protocol

import attrs
from dataflare import PluginError, PluginKind, ProcessingError, Record

from dataflare_host.connectors import ConnectorRegistry, Sink, Source, SourceBatch
from dataflare_host.pipeline._assemble import (
    ProcessorStage,
    build_connector,
    fingerprint,
    load_processor,
)
from dataflare_host.pipeline._checkpoint import Checkpoint, CheckpointStore
from dataflare_host.pipeline._config import ConnectorEntry, PipelineConfig, load_pipeline_config
from dataflare_host.pipeline._stats import StageStats
from dataflare_host.pipeline._yaml import LocatedYaml
from dataflare_host.plugins._chain import Chain

__all__ = ["Pipeline", "PipelineError", "ProgressReporter", "RunSummary"]

log = logging.getLogger("dataflare.pipeline")

_RELOAD_CHECK_S = 0.2


class PipelineError(PluginError):
    """A pipeline stopped on a failure: which stage, and why."""


class ProgressReporter(Protocol):
    """Receives the stage counters while a pipeline runs."""

    def update(self, stats: Sequence[StageStats]) -> None:
        """Called a few times per second from the pipeline's main loop."""

    def finish(self, summary: RunSummary) -> None:
        """Called once, when the run ends."""


@attrs.frozen
class RunSummary:
    """How a run ended, with every stage's counters."""

    name: str
    status: Literal["completed", "stopped", "failed"]
    stats: list[StageStats]
    seconds: float
    error: str | None = None
    resumed: bool = False

    @property
    def exit_code(self) -> int:
        """0 when the run completed or was stopped cleanly, 1 when it failed."""
        return 1 if self.status == "failed" else 0


@attrs.frozen
class _Item:
    source: int
    batch: SourceBatch


@attrs.frozen
class _Done:
    source: int
    error: BaseException | None = None


class Pipeline:
    """A checked, loaded pipeline, ready to run.

    >>> pipeline = Pipeline.from_file("examples/pipeline.yaml")  # doctest: +SKIP
    >>> pipeline.run().status  # doctest: +SKIP
    'completed'
    """

    def __init__(
        self, config: PipelineConfig, doc: LocatedYaml, registry: ConnectorRegistry | None = None
    ) -> None:
        self.config = config
        self.doc = doc
        registry = registry or ConnectorRegistry.from_entry_points()
        self.sources: list[Source] = []
        self.sinks: list[Sink] = []
        self.look_back_sources: dict[str, Source] = {}
        self.dead_letter: Sink | None = None
        self.processors: list[ProcessorStage] = []
        try:
            for index, entry in enumerate(config.sources):
                built = build_connector(entry, doc, ("sources", index), registry, "source")
                self.sources.append(built)  # type: ignore[arg-type]
            for index, entry in enumerate(config.sinks):
                built = build_connector(entry, doc, ("sinks", index), registry, "sink")
                self.sinks.append(built)  # type: ignore[arg-type]
            if config.dead_letter is not None:
                self.dead_letter = build_connector(  # type: ignore[assignment]
                    config.dead_letter, doc, ("dead_letter",), registry, "sink"
                )
            for index, processor in enumerate(config.processors):
                self.processors.append(load_processor(processor, doc, index))
            for index, processor in enumerate(config.processors):
                look_back = processor.config.look_back
                if look_back is None:
                    continue
                entry = ConnectorEntry(f"{processor.id}.look_back", "plugin", look_back.source)
                where = ("processors", index, "config", "look_back", "source")
                built = build_connector(entry, doc, where, registry, "source", nested=False)
                assert isinstance(built, Source)
                self.look_back_sources[processor.id] = built
        except BaseException:
            self.close()
            raise
        checkpoint = config.checkpoint.path or f".dataflare/{config.name}.checkpoint.json"
        self.checkpoints = CheckpointStore(doc.file.parent / checkpoint)
        self.stats = (
            [StageStats(e.id, "source", e.config.plugin_type) for e in config.sources]
            + [StageStats(p.id, "processor", p.plugin.kind.value) for p in self.processors]
            + [StageStats(e.id, "sink", e.config.plugin_type) for e in config.sinks]
        )
        if config.dead_letter is not None:
            self.stats.append(
                StageStats(
                    config.dead_letter.id, "dead_letter", config.dead_letter.config.plugin_type
                )
            )
        self._stop = threading.Event()
        self._failed = threading.Event()
        self._exhausted: set[int] = set()
        self._sinks_healthy = False
        self._warmed: dict[str, list[Record]] = {}

    @classmethod
    def from_file(cls, path: str | Path, registry: ConnectorRegistry | None = None) -> Pipeline:
        """Parse, check and load the pipeline in ``path`` (raises ConfigurationError)."""
        config, doc = load_pipeline_config(path)
        return cls(config, doc, registry)

    # -- running ------------------------------------------------------------

    def stop(self) -> None:
        """Ask the run to stop: no more reading; what was read is drained and committed."""
        self._stop.set()

    def run(
        self, progress: ProgressReporter | None = None, *, handle_signals: bool = True
    ) -> RunSummary:
        """Run until every source is exhausted, :meth:`stop` is called, or a failure."""
        started = time.monotonic()
        for stage_stats in self.stats:
            stage_stats.started = started
        restore = self._install_signal_handlers() if handle_signals else None
        checkpoint = self.checkpoints.load()
        resumed = bool(checkpoint.positions)
        for stage in self.processors:
            if stage.id in checkpoint.accumulators:
                stage.plugin.accumulator = checkpoint.accumulators[stage.id]
        status: Literal["completed", "stopped", "failed"] = "completed"
        error: str | None = None
        positions = dict(checkpoint.positions)
        try:
            self._warm_up(checkpoint)
            self._connect(checkpoint)
            status = self._main_loop(positions, progress)
        except PluginError as exc:
            status, error = "failed", str(exc)
            log.error("%s", error)
        finally:
            if status == "failed":
                self._failed.set()
            self._stop.set()
            if restore is not None:
                restore()
        if status != "failed" or self._sinks_healthy:
            try:
                self._commit(positions)
            except PluginError as exc:
                status, error = "failed", error or str(exc)
        summary = RunSummary(
            self.config.name, status, self.stats, time.monotonic() - started, error, resumed
        )
        if progress is not None:
            progress.finish(summary)
        return summary

    def _install_signal_handlers(self) -> Callable[[], None] | None:
        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum: int, _frame: FrameType | None) -> None:
            log.warning(
                "received %s: stopping (draining, flushing, checkpointing)",
                signal.Signals(signum).name,
            )
            self.stop()

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

        def restore() -> None:
            for sig, old in previous.items():
                signal.signal(sig, old)

        return restore

    def _warm_up(self, checkpoint: Checkpoint) -> None:
        """Run look-back for processors the checkpoint holds no state for."""
        for index, stage in enumerate(self.processors):
            source = self.look_back_sources.get(stage.id)
            look_back = stage.config.look_back
            if source is None or look_back is None or stage.id in checkpoint.accumulators:
                continue
            records = _look_back_records(
                source, look_back.last, look_back.age_ms, self.config.batch.size
            )
            result = stage.plugin.look_back(records)
            if result.error is not None:
                failed = records[result.consumed] if result.consumed < len(records) else None
                raise PipelineError(
                    f"processor {stage.id!r}: look_back failed: {result.error}{_describe(failed)}"
                )
            self._warmed[stage.id] = records  # a hot-reloaded version learns them too
            log.info(
                "processor %r (#%d) warmed up on %d look-back record(s)",
                stage.id,
                index,
                len(records),
            )

    def _connect(self, checkpoint: Checkpoint) -> None:
        self._sinks_healthy = False
        for sink in self.sinks:
            sink.connect()
        if self.dead_letter is not None:
            self.dead_letter.connect()
        self._sinks_healthy = True
        for entry, source in zip(self.config.sources, self.sources, strict=True):
            try:
                source.connect(checkpoint.positions.get(entry.id))
            except PluginError as exc:
                raise PipelineError(f"source {entry.id!r}: {exc}") from exc

    def _main_loop(
        self, positions: dict[str, Any], progress: ProgressReporter | None
    ) -> Literal["completed", "stopped"]:
        batches: queue.Queue[_Item | _Done] = queue.Queue(maxsize=self.config.batch.queue_batches)
        readers = [
            threading.Thread(
                target=self._read,
                args=(index, batches),
                daemon=True,
                name=f"dataflare-source-{entry.id}",
            )
            for index, entry in enumerate(self.config.sources)
        ]
        for reader in readers:
            reader.start()
        live = len(readers)
        interval = self.config.checkpoint.interval_ms / 1000
        last_commit = last_reload = last_progress = time.monotonic()
        try:
            while live:
                try:
                    item = batches.get(timeout=0.05)
                except queue.Empty:
                    item = None
                now = time.monotonic()
                if isinstance(item, _Done):
                    live -= 1
                    if item.error is not None:
                        entry = self.config.sources[item.source]
                        raise PipelineError(
                            f"source {entry.id!r} failed: {item.error}"
                        ) from item.error
                elif isinstance(item, _Item):
                    self._handle(item, positions)
                if now - last_reload >= _RELOAD_CHECK_S:
                    self._hot_reload()
                    last_reload = now
                if now - last_commit >= interval:
                    self._commit(positions)
                    last_commit = now
                if progress is not None and now - last_progress >= 0.25:
                    progress.update(self.stats)
                    last_progress = now
        except BaseException:
            self._failed.set()  # readers blocked on a full queue give up at once
            raise
        finally:
            self._stop.set()
            for reader in readers:
                reader.join(timeout=5)
        return "stopped" if self._stop_requested_early else "completed"

    @property
    def _stop_requested_early(self) -> bool:
        return self._stop.is_set() and not self._all_exhausted

    def _read(self, index: int, batches: queue.Queue[_Item | _Done]) -> None:
        source = self.sources[index]
        stats = self.stats[index]
        size = self.config.batch.size
        linger = self.config.batch.linger_ms / 1000
        try:
            while not self._stop.is_set():
                batch = source.read(size, linger)
                if batch is None:
                    self._exhausted.add(index)
                    break
                if not batch.records:
                    continue
                stats.add(records_out=len(batch.records))
                while not self._failed.is_set():
                    try:
                        batches.put(_Item(index, batch), timeout=0.1)
                        break
                    except queue.Full:
                        continue
            self._put_done(batches, _Done(index))
        except Exception as exc:  # noqa: BLE001 - any connector failure must reach the main loop
            self._put_done(batches, _Done(index, exc))

    def _put_done(self, batches: queue.Queue[_Item | _Done], done: _Done) -> None:
        while not self._failed.is_set():
            try:
                batches.put(done, timeout=0.1)
                return
            except queue.Full:
                continue

    @property
    def _all_exhausted(self) -> bool:
        return len(self._exhausted) == len(self.sources)

    def _handle(self, item: _Item, positions: dict[str, Any]) -> None:
        # Aggregate state must match the checkpointed positions: if this batch
        # fails anywhere, its effect on the accumulators is undone.
        before = [stage.plugin.accumulator for stage in self.processors]
        try:
            self._write(item, positions)
        except PluginError:
            for stage, accumulator in zip(self.processors, before, strict=True):
                stage.plugin.accumulator = accumulator
            raise

    def _write(self, item: _Item, positions: dict[str, Any]) -> None:
        records = list(item.batch.records)
        outputs, dead = self._process(records)
        for entry, sink, stats in zip(
            self.config.sinks, self.sinks, self._sink_stats(), strict=True
        ):
            try:
                sink.write(outputs)
            except PluginError as exc:
                self._sinks_healthy = False
                raise PipelineError(f"sink {entry.id!r} failed: {exc}") from exc
            stats.add(records_in=len(outputs), records_out=len(outputs))
        if dead:
            assert self.dead_letter is not None
            assert self.config.dead_letter is not None
            try:
                self.dead_letter.write(dead)
            except PluginError as exc:
                self._sinks_healthy = False
                raise PipelineError(
                    f"dead_letter sink {self.config.dead_letter.id!r} failed: {exc}"
                ) from exc
            self.stats[-1].add(records_in=len(dead), records_out=len(dead))
        positions[self.config.sources[item.source].id] = item.batch.position

    def _sink_stats(self) -> list[StageStats]:
        first = len(self.sources) + len(self.processors)
        return self.stats[first : first + len(self.sinks)]

    def _process(self, records: list[Record]) -> tuple[list[Record], list[Record]]:
        chain = Chain(
            [stage.plugin for stage in self.processors],
            [
                "stop" if stage.config.on_error == "fail" else "continue"
                for stage in self.processors
            ],
        )
        result = chain.process(records)
        dead: list[Record] = []
        for position, (stage, report) in enumerate(zip(self.processors, result.steps, strict=True)):
            self.stats[len(self.sources) + position].add(
                records_in=report.records_in,
                records_out=report.records_out,
                filtered=Chain.filtered(stage.plugin, report),
                errored=report.errored,
            )
            for error, failed in report.failures:
                if stage.config.on_error == "fail":
                    raise PipelineError(
                        f"processor {stage.id!r} failed: {error}{_describe(failed)}; "
                        "set on_error: skip or dead_letter to go on past such records"
                    )
                log.warning(
                    "processor %r skipped a record: %s%s", stage.id, error, _describe(failed)
                )
                if stage.config.on_error == "dead_letter":
                    dead.append(_dead_letter_record(stage, error, failed))
        return result.outputs, dead

    def _commit(self, positions: dict[str, Any]) -> None:
        # Order is the guarantee: sinks durable first, then the positions saying so.
        for sink in [*self.sinks, *([self.dead_letter] if self.dead_letter else [])]:
            sink.flush()
        accumulators = {
            stage.id: stage.plugin.accumulator
            for stage in self.processors
            if stage.plugin.kind is PluginKind.AGGREGATE
        }
        self.checkpoints.save(Checkpoint(dict(positions), accumulators))
        for entry, source in zip(self.config.sources, self.sources, strict=True):
            if entry.id in positions:
                source.ack(positions[entry.id])

    def _hot_reload(self) -> None:
        for index, stage in enumerate(self.processors):
            if stage.file is None or not stage.config.hot_reload:
                continue
            current = fingerprint(stage.file)
            if current is None or current == stage.fingerprint:
                continue
            stage.fingerprint = current  # a broken version is tried once, not every tick
            entry = self.config.processors[index]
            try:
                fresh = load_processor(entry, self.doc, index)
            except PluginError as exc:
                log.error(
                    "hot reload of processor %r failed; the previous version keeps running: %s",
                    stage.id,
                    exc,
                )
                continue
            if stage.id in self._warmed:
                warmed = fresh.plugin.look_back(self._warmed[stage.id])
                if warmed.error is not None:
                    fresh.plugin.close()
                    log.error(
                        "hot reload of processor %r failed in look_back; the previous version "
                        "keeps running: %s",
                        stage.id,
                        warmed.error,
                    )
                    continue
            # After the replay: the running state (an aggregate's) is newer than it.
            fresh.plugin.accumulator = stage.plugin.accumulator
            old = stage.plugin
            stage.plugin = fresh.plugin
            old.close()
            self.stats[len(self.sources) + index].reloads += 1
            log.warning("hot reload: processor %r now runs the new %s", stage.id, stage.file)

    def close(self) -> None:
        """Close every plugin and connector (safe to call twice)."""
        for stage in self.processors:
            stage.plugin.close()
        connectors: list[Source | Sink] = [
            *self.sources,
            *self.sinks,
            *self.look_back_sources.values(),
        ]
        if self.dead_letter is not None:
            connectors.append(self.dead_letter)
        for connector in connectors:
            try:
                connector.close()
            except PluginError as exc:
                log.error("closing a connector failed: %s", exc)


def _look_back_records(
    source: Source, last: int | None, age_ms: int | None, batch_size: int
) -> list[Record]:
    """The warm-up records: the last N, or those at most ``age_ms`` old, oldest first."""
    kept: collections.deque[Record] = collections.deque(maxlen=last)
    cutoff = int(time.time() * 1000) - age_ms if age_ms is not None else None
    source.connect(None)
    try:
        while True:
            batch = source.read(batch_size, 0.05)
            if batch is None or not batch.records:  # exhausted, or caught up for now
                break
            for record in batch.records:
                if cutoff is None or (record.timestamp is not None and record.timestamp >= cutoff):
                    kept.append(record)
    finally:
        source.close()
    return list(kept)


def _describe(record: Record | None) -> str:
    """Where a record came from, for error messages."""
    if record is None:
        return ""
    where = []
    if "file" in record.metadata:
        where.append(f"{record.metadata['file']} line {record.metadata.get('line', '?')}")
    if record.key is not None:
        where.append(f"key {record.key.decode('utf-8', 'backslashreplace')!r}")
    preview = record.value[:60].decode("utf-8", "backslashreplace")
    where.append(f"value {preview!r}{'...' if len(record.value) > 60 else ''}")
    return f" (record {', '.join(where)})"


def _dead_letter_record(stage: ProcessorStage, error: ProcessingError, record: Record) -> Record:
    body = {
        "stage": stage.id,
        "error": error.fields(),
        "record": {
            "offset": record.offset,
            "key": None if record.key is None else record.key.decode("utf-8", "backslashreplace"),
            "value": record.value.decode("utf-8", "backslashreplace"),
            "timestamp": record.timestamp,
            "metadata": dict(record.metadata),
        },
    }
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return Record(text.encode(), record.key, record.timestamp, record.metadata, record.offset)
