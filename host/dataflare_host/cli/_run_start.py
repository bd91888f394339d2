"""How ``dataflare run`` starts: fresh or resumed, and what that does to existing output.

Before a run, the operator is told exactly what will happen to what the sinks
already hold: with ``--reset``, one line for the checkpoint it discards and one
per sink (``--reset: sink 'out' (file): out.jsonl (1,234 lines) will be
overwritten``),
printed before anything is discarded; without it, a line for each file sink
that a fresh start empties (``mode: overwrite``): ``starting fresh: sink 'out'
(file): out.jsonl (1,234 lines) will be overwritten``. File sinks are then told
whether the run resumes, which decides whether overwrite mode empties them.
"""

from __future__ import annotations

import attrs

from dataflare import PluginError
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
        return cls(pipeline, reset, resuming, f"discarding checkpoint {store.path} ({held})")

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

    def lines(self) -> list[str]:
        """What the operator is told before the run: one line per sink (see the module)."""
        if not self.reset:
            if self.resuming is not False:
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

    def apply(self) -> None:
        """Discard the checkpoint (``--reset``); the run then tells each sink it starts fresh."""
        if self.reset:
            self.pipeline.checkpoints.reset()
