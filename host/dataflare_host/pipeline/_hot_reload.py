"""Hot reload: swapping in a processor whose plugin file changed, between batches."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from dataflare import PluginError, Record
from dataflare_host.pipeline._assemble import ProcessorStage, fingerprint, load_processor
from dataflare_host.pipeline._config import ProcessorEntry
from dataflare_host.pipeline._stats import PipelineStats
from dataflare_host.pipeline._yaml import LocatedYaml
from dataflare_host.plugins import Plugin

__all__ = ["HotReloader"]

log = logging.getLogger("dataflare.pipeline")


class HotReloader:
    """Watches the processors' plugin files and swaps in a changed one's new version.

    ``processors`` are the running stages (a swap replaces ``stage.plugin`` in
    place) and ``entries`` their config entries, in the same order. A new
    version replaces the running one only once it loaded and, when the stage
    was warmed up, learned the same look-back records (:attr:`warmed`).
    """

    def __init__(
        self,
        processors: Sequence[ProcessorStage],
        entries: Sequence[ProcessorEntry],
        doc: LocatedYaml,
        stats: PipelineStats,
    ) -> None:
        self._processors = processors
        self._entries = entries
        self._doc = doc
        self._stats = stats
        # The hash each file had when last looked at (at load, then at each change).
        self._fingerprints = {stage.id: stage.fingerprint for stage in processors}
        self.warmed: dict[str, list[Record]] = {}
        """The look-back records each warmed-up processor learned, by stage id."""

    def check(self) -> bool:
        """Swap in every processor whose file changed; True when any plugin was swapped.

        A version that fails to load or to learn the look-back records is logged
        and the previous version keeps running.
        """
        swapped = False
        for index, (stage, entry) in enumerate(zip(self._processors, self._entries, strict=True)):
            if stage.file is None or not stage.config.hot_reload:
                continue
            current = fingerprint(stage.file)
            if current is None or current == self._fingerprints[stage.id]:
                continue
            self._fingerprints[stage.id] = current  # a broken version is tried once, not every tick
            try:
                fresh = load_processor(entry, self._doc, index)
            except PluginError as exc:
                log.error(
                    "hot reload of processor %r failed; the previous version keeps running: %s",
                    stage.id,
                    exc,
                )
                continue
            if stage.id in self.warmed:
                warmed = fresh.plugin.look_back(self.warmed[stage.id])
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
            if not self._carry_state(stage, fresh.plugin):
                fresh.plugin.close()
                continue
            old = stage.plugin
            stage.plugin = fresh.plugin
            old.close()
            self._stats[stage.id].reloads += 1
            swapped = True
            log.warning("hot reload: processor %r now runs the new %s", stage.id, stage.file)
        return swapped

    def _carry_state(self, stage: ProcessorStage, fresh: Plugin) -> bool:
        """Give the new version the running version's declared state; False (logged)
        when it cannot take it, and the running version stays."""
        if stage.plugin.state_bounds is None:
            return True
        try:
            fresh.restore_state(stage.plugin.snapshot_state())
        except PluginError as exc:
            log.error(
                "hot reload of processor %r failed: the new version cannot take the running "
                "one's state; the previous version keeps running: %s",
                stage.id,
                exc,
            )
            return False
        return True
