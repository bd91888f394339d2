"""Running a pipeline: sources -> processor chain -> sinks, at least once.

Threads: one reader per source puts batches on a bounded queue (a slow sink
fills it and the readers block: backpressure, flat memory); the main loop runs
the processors and writes every sink, then, at most every checkpoint interval,
flushes the sinks and only then saves the source positions, aggregate state and
plugins' declared state.
Between batches it also swaps in processors whose file changed (hot reload).

The steps live beside this module: the checkpoint checked and state restored
in ``_resume``, reader threads in ``_readers``, look-back warm-up in
``_look_back``, hot reload in ``_hot_reload``, the write-up of failed records
in ``_dead_letter``, the counters in ``_stats`` and what a run reports in
``_run_outcome``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import attrs

from dataflare import PluginError, PluginKind, Record
from dataflare_host._plugin_frames import log_plugin_frames
from dataflare_host.connectors import (
    ConnectorRegistry,
    PartitionedSource,
    PartitionPositions,
    Sink,
    Source,
)
from dataflare_host.pipeline._assemble import (
    ProcessorStage,
    build_connector,
    chain_of,
    load_processor,
    prestart_sandbox_for,
    release_processors,
)
from dataflare_host.pipeline._checkpoint import Checkpoint, CheckpointStore
from dataflare_host.pipeline._config import ConnectorEntry, PipelineConfig, load_pipeline_config
from dataflare_host.pipeline._dead_letter import dead_letter_record, describe, rejected_record
from dataflare_host.pipeline._delivery import TransactionalSink, pair_exactly_once
from dataflare_host.pipeline._errors import PipelineError
from dataflare_host.pipeline._failure_log import FailureLog
from dataflare_host.pipeline._gc_pacing import collect_per_batches
from dataflare_host.pipeline._hot_reload import HotReloader
from dataflare_host.pipeline._look_back import warm_up
from dataflare_host.pipeline._readers import ReadBatch, ReaderDone, SourceReaders
from dataflare_host.pipeline._resume import checked_checkpoint
from dataflare_host.pipeline._run_outcome import ProgressReporter, RunHealth, RunSummary
from dataflare_host.pipeline._stats import PipelineStats, StageStats, record_age
from dataflare_host.pipeline._stop_signals import stop_on_signals
from dataflare_host.pipeline._yaml import LocatedYaml
from dataflare_host.pipeline.engines import Done, Engine, make_engine, worker_count
from dataflare_host.pipeline.partitions import (
    PartitionedRun,
    PartitionReading,
    make_slots,
    partition_reading,
    refuse_split_sinks,
)
from dataflare_host.plugins._chain import Chain, ChainResult

__all__ = ["Pipeline", "PipelineError", "ProgressReporter", "RunHealth", "RunSummary"]

log = logging.getLogger("dataflare.pipeline")

_RELOAD_CHECK_S = 0.2


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
            prestart_sandbox_for(config.processors)
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
            self._transactional: list[tuple[str, TransactionalSink]] = pair_exactly_once(
                config, doc, self.sources, self.sinks
            )
            refuse_split_sinks(config, doc, self.sources, self._named_sinks(), self.processors)
        except BaseException:
            self.close()
            raise
        checkpoint = config.checkpoint.path or f".dataflare/{config.name}.checkpoint.json"
        self.checkpoints = CheckpointStore(doc.file.parent / checkpoint)
        stages = (
            [StageStats(e.id, "source", e.config.connector) for e in config.sources]
            + [StageStats(p.id, "processor", p.plugin.kind.value) for p in self.processors]
            + [StageStats(e.id, "sink", e.config.connector) for e in config.sinks]
        )
        if config.dead_letter is not None:
            stages.append(
                StageStats(
                    config.dead_letter.id, "dead_letter", config.dead_letter.config.connector
                )
            )
        self._stats = PipelineStats(stages)
        # Built once: only a hot-reload swap changes the plugins it runs.
        self._chain = chain_of(self.processors)
        self._reloader = HotReloader(self.processors, config.processors, doc, self._stats)
        self._stop = threading.Event()
        self._signal: str | None = None
        self._failed = threading.Event()
        self._sinks_healthy = False
        # A batch failed after stateful plugins may have run on it: their live state
        # is then ahead of the positions, so this run saves no further checkpoint.
        self._state_ahead = False
        self._failures = FailureLog()
        self._checkpointed_at: float | None = None
        self._started_at = time.time()
        self.measure_record_latency = False
        """Whether sinks time each batch's first timestamped record against the clock
        (the metrics server turns it on: it costs a look at one record per batch)."""
        # -- engines: where the chain runs (built in run(): Ray joins a cluster) --
        self._engine: Engine | None = None
        self._partitioned: PartitionedRun | None = None  # workers read the partitions
        self.runs_a_task = False  # set by task_pipeline: it runs one task's partitions

    @classmethod
    def from_file(cls, path: str | Path, registry: ConnectorRegistry | None = None) -> Pipeline:
        """Parse, check and load the pipeline in ``path`` (raises ConfigurationError)."""
        config, doc = load_pipeline_config(path)
        return cls(config, doc, registry)

    @property
    def stats(self) -> list[StageStats]:
        """Every stage's counters in stage order: sources, processors, sinks, dead letter,
        then one per worker when the chain runs in workers."""
        running = self._engine or self._partitioned
        return [*self._stats.ordered, *(running.worker_stats if running is not None else [])]

    def health(self) -> RunHealth:
        """The checkpoint's age and the sinks' retries, as of now (any thread)."""
        retries = {stage: sink.retries() for stage, sink in self._named_sinks()}
        return RunHealth(self._started_at, self._checkpointed_at, retries)

    def _named_sinks(self) -> list[tuple[str, Sink]]:
        """Every sink with its stage id, the dead letter's last."""
        named = [(e.id, s) for e, s in zip(self.config.sinks, self.sinks, strict=True)]
        if self.dead_letter is not None and self.config.dead_letter is not None:
            named.append((self.config.dead_letter.id, self.dead_letter))
        return named

    # -- running ------------------------------------------------------------

    def stop(self) -> None:
        """Ask the run to stop: no more reading; the batch in flight finishes and is committed;
        batches read but not yet processed are read again by the next run."""
        self._stop.set()

    def run(
        self, progress: ProgressReporter | None = None, *, handle_signals: bool = True
    ) -> RunSummary:
        """Run until every source is exhausted, :meth:`stop` is called, or a failure."""
        started = time.monotonic()
        self._started_at = time.time()
        for stage_stats in self.stats:
            stage_stats.started = started
        restore = stop_on_signals(self._stop_on) if handle_signals else None
        status: Literal["completed", "stopped", "failed"] = "completed"
        error: str | None = None
        positions: dict[str, Any] = {}
        resumed = False
        try:
            # Inside the error handling: a checkpoint this pipeline cannot resume
            # from is one line naming the file and --reset, never a traceback.
            checkpoint = self._load_checkpoint()
            resumed = bool(checkpoint.positions)
            positions = dict(checkpoint.positions)
            reading = self._partition_reading()
            if reading is not None:  # -- partitions: the workers read, not this loop --
                release_processors(self.processors)  # each worker loads its own
                status = self._read_in_workers(reading, checkpoint, progress)
            else:
                self._warm_up(checkpoint)
                self._connect(checkpoint)
                # -- engines --
                self._engine = make_engine(self.config, self.doc.file, self.processors)
                self._engine.adopt_sources(self.sources)
                self._engine.start({**checkpoint.accumulators, **checkpoint.states})
                status = self._main_loop(positions, progress)
        except PluginError as exc:
            status, error = "failed", str(exc)
            # The caller reports it (the CLI prints it once, as its error line).
            log.debug("run failed: %s", error)
            log_plugin_frames(exc)
        finally:
            if status == "failed":
                self._failed.set()
            self._stop.set()
            if restore is not None:
                restore()
        if self._partitioned is None and (
            status != "failed" or (self._sinks_healthy and not self._state_ahead)
        ):
            try:
                self._commit(positions)
            except PluginError as exc:
                status, error = "failed", error or str(exc)
        self._failures.flush()  # the last interval's counts, before the summary
        # -- engines: the workers hold nothing the commit above still needs --
        # Not RunSummary.engine: on a slotted attrs class that is the slot's descriptor
        # (printed as "<member 'engine' of 'RunSummary' objects>"), not its default.
        engine = self._engine.summary() if self._engine is not None else ""
        if self._partitioned is not None:
            engine = self._partitioned.summary()
        self.close_workers()
        summary = RunSummary(
            self.config.name,
            status,
            self.stats,
            time.monotonic() - started,
            error,
            resumed,
            self._signal,
            engine,
        )
        if progress is not None:
            progress.finish(summary)
        return summary

    def _stop_on(self, signal_name: str) -> None:
        self._signal = signal_name
        self.stop()

    def _load_checkpoint(self) -> Checkpoint:
        """The checkpoint, checked against this pipeline before anything connects."""
        sources = list(zip(self.config.sources, self.sources, strict=True))
        return checked_checkpoint(self.checkpoints, sources, self.processors)

    def _partition_reading(self) -> PartitionReading | None:
        if self.runs_a_task:
            return None
        sinks, workers = self._named_sinks(), worker_count(self.config)
        return partition_reading(self.config, self.sources, sinks, self.processors, workers)

    def _read_in_workers(
        self, reading: PartitionReading, checkpoint: Checkpoint, progress: ProgressReporter | None
    ) -> Literal["completed", "stopped"]:
        slots = make_slots(reading, str(self.doc.file), task_pipeline, self.config.address)
        interval = self.config.checkpoint.interval_ms / 1000
        self._partitioned = PartitionedRun(reading, slots, self.checkpoints, self._stats, interval)
        shown = (lambda: progress.update(self.stats)) if progress is not None else lambda: None
        saved = checkpoint.positions.get(reading.source_id)
        return self._partitioned.run(saved, self._stop.is_set, shown)

    def _warm_up(self, checkpoint: Checkpoint) -> None:
        """Run look-back for processors the checkpoint holds no state for."""
        learned = warm_up(
            self.processors, self.look_back_sources, checkpoint, self.config.batch.size
        )
        self._reloader.warmed.update(learned)  # a hot-reloaded version learns them too

    def check_connections(self) -> None:
        """Open every source (from its beginning) and sink, then close them, moving no record.

        What ``dataflare validate --connect`` runs: a server on a wrong port, a
        missing table or a down Redis fails here, as a :class:`PipelineError`
        naming the connector.
        """
        named: list[tuple[str, str, Source | Sink]] = [
            *(("source", e.id, c) for e, c in zip(self.config.sources, self.sources, strict=True)),
            *(("sink", e.id, c) for e, c in zip(self.config.sinks, self.sinks, strict=True)),
        ]
        if self.dead_letter is not None and self.config.dead_letter is not None:
            named.append(("dead_letter sink", self.config.dead_letter.id, self.dead_letter))
        for role, stage, connector in named:
            try:
                if isinstance(connector, Source):
                    connector.connect(None)
                else:
                    connector.connect()
            except PluginError as exc:
                raise PipelineError(f"{role} {stage!r} cannot connect: {exc}") from exc
            finally:
                connector.close()

    def _connect(self, checkpoint: Checkpoint) -> None:
        self._sinks_healthy = False
        # One rule for the CLI and the Python API: a checkpoint with positions
        # is a resumed run (an overwriting file sink appends to what it covers).
        resuming = bool(checkpoint.positions)
        for sink in self.sinks:
            sink.run_starts(resuming=resuming)
            sink.connect()
        if self.dead_letter is not None:
            self.dead_letter.run_starts(resuming=resuming)
            self.dead_letter.connect()
        self._sinks_healthy = True
        for entry, source in zip(self.config.sources, self.sources, strict=True):
            position = checkpoint.positions.get(entry.id)
            try:
                by_partition = PartitionPositions.from_json(position)
                if by_partition is not None and isinstance(source, PartitionedSource):
                    position = source.join_positions(by_partition)  # workers read it last
                source.connect(position)
            except PluginError as exc:
                raise PipelineError(f"source {entry.id!r}: {exc}") from exc
            except (KeyError, AttributeError, TypeError, ValueError) as exc:
                if position is None:
                    raise
                # A connector without its own check_position trips over a
                # foreign position (another connector's, a hand-edited one).
                raise self.checkpoints.unusable(
                    f"source {entry.id!r} cannot resume from {repr(position)[:120]}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc

    def _main_loop(
        self, positions: dict[str, Any], progress: ProgressReporter | None
    ) -> Literal["completed", "stopped"]:
        readers = SourceReaders(
            [(e.id, source) for e, source in zip(self.config.sources, self.sources, strict=True)],
            self._stats,
            self.config.batch,
            self._stop,
            self._failed,
        )
        readers.start()
        restore_collector = collect_per_batches(self.config.batch.size)
        live = len(readers)
        engine = self._engine
        assert engine is not None
        interval = self.config.checkpoint.interval_ms / 1000
        last_commit = last_reload = last_progress = time.monotonic()
        if progress is not None:
            # At once, not a quarter second in: a reporter keeps these (live) counters,
            # so a scrape during a first slow batch already sees every stage.
            progress.update(self.stats)
        try:
            while live or engine.pending:
                if self._stop.is_set():
                    # Stop now: batches read but not processed are not committed,
                    # so the next run reads them again (at least once). Draining
                    # them could take minutes behind a slow plugin.
                    break
                # -- engines: read while the engine has room, hand back in source order --
                item = None
                if live and not engine.full:
                    item = readers.get(timeout=0.002 if engine.pending else 0.05)
                now = time.monotonic()
                if isinstance(item, ReaderDone):
                    live -= 1
                    if item.error is not None:
                        raise PipelineError(
                            f"source {item.source!r} failed: {item.error}"
                        ) from item.error
                elif isinstance(item, ReadBatch):
                    engine.submit(item, item.batch.records)
                waiting = engine.full or not live
                for done in engine.ready(timeout=0.05 if waiting else 0.0):
                    self._handle(done, positions)
                if now - last_reload >= _RELOAD_CHECK_S:
                    self._hot_reload()
                    last_reload = now
                if now - last_commit >= interval:
                    self._commit(positions)
                    last_commit = now
                self._failures.tick(now)
                if progress is not None and now - last_progress >= 0.25:
                    progress.update(self.stats)
                    last_progress = now
        except BaseException:
            self._failed.set()  # readers blocked on a full queue give up at once
            raise
        finally:
            restore_collector()
            self._stop.set()
            readers.join(timeout=5)
        # A stop with sources still holding records is a stop; one after they all ran dry is not.
        return "stopped" if self._stop.is_set() and not readers.all_exhausted else "completed"

    def _handle(self, done: Done, positions: dict[str, Any]) -> None:
        # Aggregate state must match the checkpointed positions: if this batch
        # fails anywhere, its effect on the accumulators is undone.
        before = [stage.plugin.accumulator for stage in self.processors]
        try:
            self._write(done, positions)
        except PluginError:
            for stage, accumulator in zip(self.processors, before, strict=True):
                stage.plugin.accumulator = accumulator
            # Declared state is not copied per batch (it may be large): it cannot be
            # undone, so the last checkpoint stays the one to resume from.
            self._state_ahead = any(s.plugin.state_bounds is not None for s in self.processors)
            raise
        assert self._engine is not None
        self._engine.delivered(done)  # -- engines: partitioned state follows the sinks
        # Done with it: drop what its result closure holds. The in-process
        # engine's closure refers back to the Done (a reference cycle), which
        # would keep the batch's records alive until a full garbage collection:
        # ~2 objects per record piling up, each collection walking them all.
        done.compute = _handed_back

    def _write(self, done: Done, positions: dict[str, Any]) -> None:
        item: ReadBatch = done.tag
        outputs, dead = self._process(done.result())
        age = record_age(outputs) if self.measure_record_latency else None
        for entry, sink in zip(self.config.sinks, self.sinks, strict=True):
            stats = self._stats[entry.id]
            try:
                began = time.perf_counter()
                sink.write(outputs)
            except PluginError as exc:
                self._sinks_healthy = False
                raise PipelineError(f"sink {entry.id!r} failed: {exc}") from exc
            if outputs:
                stats.batch_seconds.observe(time.perf_counter() - began)
            if age is not None:
                stats.record_latency.observe(age)
            stats.add(records_in=len(outputs), records_out=len(outputs))
            dead.extend(self._rejections(entry.id, sink))
        self._write_dead_letter(dead)
        positions[item.source] = item.batch.position

    def _rejections(self, stage: str, sink: Sink) -> list[Record]:
        """Dead-letter records for what ``sink`` refused; fails when there is no dead letter."""
        rejected = sink.take_rejected()
        if not rejected:
            return []
        self._stats[stage].add(records_out=-len(rejected), errored=len(rejected))
        if self.dead_letter is None:
            # Nothing of this batch may be checkpointed: the refused records would be lost.
            self._sinks_healthy = False
            raise PipelineError(
                f"sink {stage!r} refused {len(rejected)} record(s), the first"
                f"{describe(rejected[0].record)}: {rejected[0].reason}; add a dead_letter: "
                "sink to keep refused records and go on"
            )
        for each in rejected:
            self._failures.note(f"sink {stage!r}", "refused", each.reason + describe(each.record))
        return [rejected_record(stage, each) for each in rejected]

    def _write_dead_letter(self, dead: list[Record]) -> None:
        if not dead:
            return
        assert self.dead_letter is not None
        assert self.config.dead_letter is not None
        try:
            self.dead_letter.write(dead)
        except PluginError as exc:
            self._sinks_healthy = False
            raise PipelineError(
                f"dead_letter sink {self.config.dead_letter.id!r} failed: {exc}"
            ) from exc
        self._stats[self.config.dead_letter.id].add(records_in=len(dead), records_out=len(dead))

    def _process(self, result: ChainResult) -> tuple[Sequence[Record], list[Record]]:
        dead: list[Record] = []
        # A stopping failure ends the chain (Fluvio's semantics): only the steps
        # that ran have a report.
        ran = self.processors[: len(result.steps)]
        for stage, report in zip(ran, result.steps, strict=True):
            stats = self._stats[stage.id]
            stats.add(
                records_in=report.records_in,
                records_out=report.records_out,
                filtered=Chain.filtered(stage.plugin, report),
                errored=report.errored,
            )
            if report.records_in:
                stats.batch_seconds.observe(report.seconds)
            for error, failed in report.failures:
                if stage.config.on_error == "fail":
                    raise PipelineError(
                        f"processor {stage.id!r} failed: {error}{describe(failed)}; "
                        "set on_error: skip or dead_letter to go on past such records"
                    ) from error
                action = "dead-lettered" if stage.config.on_error == "dead_letter" else "skipped"
                self._failures.note(f"processor {stage.id!r}", action, f"{error}{describe(failed)}")
                if stage.config.on_error == "dead_letter":
                    dead.append(dead_letter_record(stage, error, failed))
        return result.outputs, dead

    def _commit(self, positions: dict[str, Any]) -> None:
        # Order is the guarantee: sinks durable first, then the positions saying so.
        # What a sink refuses while flushing goes to the dead letter, flushed last.
        refused: list[Record] = []
        for source_id, transactional in self._transactional:  # delivery: exactly_once
            transactional.stage_position(positions.get(source_id))
        for entry, sink in zip(self.config.sinks, self.sinks, strict=True):
            sink.flush()
            refused.extend(self._rejections(entry.id, sink))
        self._write_dead_letter(refused)
        if self.dead_letter is not None:
            self.dead_letter.flush()
        accumulators = {
            stage.id: stage.plugin.accumulator
            for stage in self.processors
            if stage.plugin.kind is PluginKind.AGGREGATE
        }
        # Between batches, so each plugin's state reflects exactly the handled batches.
        declared = {s.id for s in self.processors if s.plugin.state_bounds is not None}
        states = {s.id: s.plugin.snapshot_state() for s in self.processors if s.id in declared}
        if self._engine is not None:
            for key, value in self._engine.checkpoint_state().items():  # partitioned keys
                stage_id = key.split("#", 1)[0]
                if stage_id in declared:
                    states.pop(stage_id, None)  # kept per key: the plugin's own copy is moot
                    states[key] = value or b""
                else:
                    accumulators[key] = value
        self.checkpoints.save(Checkpoint(dict(positions), accumulators, states))
        self._checkpointed_at = time.time()
        for entry, source in zip(self.config.sources, self.sources, strict=True):
            if entry.id in positions:
                source.ack(positions[entry.id])

    def _hot_reload(self) -> None:
        if self._engine is not None and self._engine.worker_stats:
            return  # -- engines: workers loaded their plugins at start; no reload there --
        if self._reloader.check():
            self._chain = chain_of(self.processors)

    def close_workers(self) -> None:
        """Stop the workers, of the chain's engine or reading partitions (safe twice)."""
        for workers in (getattr(self, "_engine", None), getattr(self, "_partitioned", None)):
            if workers is not None:  # close() may run mid-__init__
                workers.close()

    def close(self) -> None:
        """Close every plugin and connector (safe to call twice)."""
        self.close_workers()
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


def task_pipeline(pipeline_file: str) -> Pipeline:
    """The pipeline one task of a partitioned run runs, over its partitions, in one
    process: the file's, with one worker (a task never reads in workers of its own)."""
    config, doc = load_pipeline_config(pipeline_file)
    one = [attrs.evolve(p, config=attrs.evolve(p.config, workers=None)) for p in config.processors]
    pipeline = Pipeline(attrs.evolve(config, workers="1", engine="local", processors=one), doc)
    pipeline.runs_a_task = True
    return pipeline


def _handed_back() -> ChainResult:
    """What a batch's result is once the runner handled it: asked for again, a bug."""
    raise AssertionError("a batch's result was asked for after the batch was handled")
