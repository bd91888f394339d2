"""Showing a failed plugin's own traceback frames (``-v``), wherever the failure is reported."""

from __future__ import annotations

import logging

from dataflare import ProcessingError

__all__ = ["log_plugin_frames"]

log = logging.getLogger("dataflare.plugin")


def log_plugin_frames(error: BaseException) -> None:
    """Log, at INFO, the plugin's frames of the first :class:`ProcessingError` in ``error``'s chain.

    Only the plugin's own frames (never the host's or the SDK's): an author's
    ``-v`` shows where in their code it went wrong, both runtimes alike.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ProcessingError) and current.frames:
            log.info(
                "plugin %r raised (its own frames, most recent call last):\n%s",
                current.plugin,
                current.frames,
            )
            return
        current = current.__cause__ or current.__context__
