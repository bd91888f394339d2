"""A pipeline file run in-process, to its end, without signal handlers."""

from __future__ import annotations

from pathlib import Path

from dataflare_host.pipeline._runner import Pipeline, RunSummary


def run_to_end(file: Path) -> RunSummary:
    """The summary of running ``file``'s pipeline to its end (closed afterwards)."""
    pipeline = Pipeline.from_file(file)
    try:
        return pipeline.run(None, handle_signals=False)
    finally:
        pipeline.close()
