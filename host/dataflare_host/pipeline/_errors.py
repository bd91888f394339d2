"""The error a pipeline stops on, shared by the runner and the steps it calls."""

from __future__ import annotations

from dataflare import PluginError

__all__ = ["PipelineError"]


class PipelineError(PluginError):
    """A pipeline stopped on a failure: which stage, and why."""
