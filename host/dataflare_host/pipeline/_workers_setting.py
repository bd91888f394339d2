"""The ``workers:`` setting of a pipeline and of a processor: a count, or ``auto``.

Apart from the engines that use it, so that the configuration checks it without
importing the engines (which import the configuration).
"""

from __future__ import annotations

import os

from dataflare import ConfigurationError

__all__ = ["MAX_WORKERS", "parse_workers"]

MAX_WORKERS = 256
"""Most pipeline workers a ``workers:`` setting may ask for."""


def parse_workers(value: str) -> int:
    """A ``workers:`` setting as a count: a whole number from 1, or ``auto`` (the cores)."""
    if value.strip().lower() == "auto":
        return os.cpu_count() or 1
    try:
        count = int(value)
    except ValueError:
        raise ConfigurationError(
            f"must be a number of workers or auto, got {value!r}", setting="workers"
        ) from None
    if not 1 <= count <= MAX_WORKERS:
        raise ConfigurationError(
            f"must be from 1 to {MAX_WORKERS} (or auto), got {count}", setting="workers"
        )
    return count
