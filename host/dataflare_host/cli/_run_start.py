"""How ``dataflare run`` starts: fresh or resumed, and what that does to existing output.

Before a run, the operator is told exactly what will happen:

- a run that resumes says so on its first line, with what each source skips
  (``resuming from .dataflare/demo.checkpoint.json: source 'in' (file): skipping
  1,054 record(s) already delivered (in.jsonl up to line 1,054); --reset starts over``);
- with ``--reset``, one line for the checkpoint it discards and one per sink
  (``--reset: sink 'out' (file): out.jsonl (1,234 lines) will be overwritten``),
  printed before anything is discarded. A file sink in ``mode: append`` (the
  default) that already holds lines makes ``--reset`` refuse instead
  (:meth:`RunStart.refusal`): reading every source again would append a second
  copy of every record, a silent duplicate; the error says how to go on
  (``mode: overwrite``, or moving the file away), and nothing is discarded;
- without ``--reset``, a line for each file sink that a fresh start empties
  (``mode: overwrite``): ``starting fresh: sink 'out' (file): out.jsonl (1,234
  lines) will be overwritten``.

File sinks are then told whether the run resumes, which decides whether overwrite
mode empties them.
"""

from __future__ import annotations

from typing import Any

import attrs

from dataflare import ConfigurationError, PluginError
from dataflare_host.connectors import FileSink, Sink
from dataflare_host.pipeline import Pipeline

__all__ = ["RunStart"]


@attrs.frozen
class RunStart:
    """Whether a run resumes, known before it connects anything.

    ``resuming`` is None when the checkpoint cannot be read: the run then
    fails on it before any sink connects (naming the file and ``--reset``),
    so no sink is told anything and none is emptied.
    """

    pipeline: Pipeline
    reset: bool
    resuming: bool | None
    checkpoint_note: str
    """What the checkpoint holds, as shown in the ``--reset`` line."""
    positions: dict[str, Any] = attrs.field(factory=dict)
    """The checkpoint's source positions (what a resumed run skips)."""

    @classmethod
    def of(cls, pipeline: Pipeline, *, reset: bool) -> RunStart:
        """Read the pipeline's checkpoint (without changing it) to see how the run starts."""
        store = pipeline.checkpoints
        if not store.path.exists():
            return cls(pipeline, reset, False, f"no checkpoint at {store.path}, nothing to discard")
        try:
            checkpoint = store.load()
        except PluginError:
            resuming = False if reset else None
            note = f"discarding checkpoint {store.path}, which cannot be read as one"
            return cls(pipeline, reset, resuming, note)
        held = (
            f"positions of {len(checkpoint.positions)} source(s), "
            f"state of {len({*checkpoint.accumulators, *checkpoint.states})} processor(s)"
        )
        # The runner's own test of a resumed run: a checkpoint holding positions.
        resuming = bool(checkpoint.positions) and not reset
        note = f"discarding checkpoint {store.path} ({held})"
        return cls(pipeline, reset, resuming, note, dict(checkpoint.positions))

    def _sinks(self) -> list[tuple[str, Sink]]:
        """Each sink (dead letter last) with how lines name it: ``sink 'out' (file)``."""
        config = self.pipeline.config
        entries = list(zip(config.sinks, self.pipeline.sinks, strict=True))
        named = [(f"sink {e.id!r} ({e.config.connector})", s) for e, s in entries]
        if config.dead_letter is not None and self.pipeline.dead_letter is not None:
            entry = config.dead_letter
            named.append(
                (f"dead_letter {entry.id!r} ({entry.config.connector})", self.pipeline.dead_letter)
            )
        return named

    def refusal(self) -> ConfigurationError | None:
        """Why ``--reset`` must not go on: a file sink in append mode holding lines would get
        a second copy of every record. None when it may (or without ``--reset``)."""
        if not self.reset:
            return None
        for name, sink in self._sinks():
            if not isinstance(sink, FileSink):
                continue
            held = sink.held_output()
            if held is not None:
                files = "those files" if sink.splits() else str(sink.path)
                return ConfigurationError(
                    f"--reset: {name}: {held} would get a second copy of every record "
                    "appended (mode: append); set mode: overwrite on this sink (a fresh start "
                    f"empties it) or move {files} away, then run --reset again; nothing "
                    "was discarded"
                )
        return None

    def lines(self) -> list[str]:
        """What the operator is told before the run (see the module), first line first."""
        if not self.reset:
            if self.resuming:
                line = self._resuming_line()
                return [] if line is None else [line]
            if self.resuming is None:
                return []
            return [
                f"starting fresh: {name}: {sink.describe_start(resuming=False)}"
                for name, sink in self._sinks()
                if isinstance(sink, FileSink) and sink.config.mode == "overwrite"
            ]
        lines = [f"--reset: {self.checkpoint_note}"]
        for name, sink in self._sinks():
            if isinstance(sink, FileSink):
                what = sink.describe_start(resuming=False)
            else:
                what = (
                    "what it holds is kept; every source is read again from its start, so "
                    "records already delivered are written to it again"
                )
            lines.append(f"--reset: {name}: {what}")
        return lines

    def _resuming_line(self) -> str | None:
        """``resuming from CHECKPOINT: source 'in' (file): skipping N record(s) ...``; None
        when a source cannot resume from its position (the run fails on it, in one line
        naming the checkpoint and --reset)."""
        config = self.pipeline.config
        parts = []
        for entry, source in zip(config.sources, self.pipeline.sources, strict=True):
            name = f"source {entry.id!r} ({entry.config.connector})"
            if entry.id not in self.positions:
                parts.append(f"{name}: from its start (no position saved)")
                continue
            position = self.positions[entry.id]
            try:
                source.check_position(position)
                parts.append(f"{name}: {source.describe_position(position)}")
            except (PluginError, KeyError, TypeError, ValueError, AttributeError):
                return None  # a foreign or hand-edited position: the run's error says it
        where = self.pipeline.checkpoints.path
        return f"resuming from {where}: {'; '.join(parts)}; --reset starts over"

    def apply(self) -> None:
        """Discard the checkpoint (``--reset``); the run then tells each sink it starts fresh."""
        if self.reset:
            self.pipeline.checkpoints.reset()
