"""The limits a WASM plugin runs under (:class:`SandboxLimits`): the one place they are checked.

Runs in the host process; a sandbox process receives the values in its requests.
"""

from __future__ import annotations

import math

import attrs

from dataflare import ConfigurationError

__all__ = ["Sandbox", "SandboxLimits"]

_MIN_MEMORY_MB = 32  # what CPython itself needs inside the component
_MAX_MEMORY_MB = 4096  # a 32-bit wasm memory cannot grow past 4 GiB
_MAX_TIME_LIMIT_S = 24 * 3600.0


@attrs.frozen
class SandboxLimits:
    """Limits for a WASM plugin (time per call, memory, instances), checked when built.

    ``time_limit_s`` bounds each call into the guest (a batch, ``init``,
    ``describe``, a look-back); ``memory_limit_mb`` caps the guest's linear
    memory; ``instances`` > 1 splits large batches of record-wise kinds across
    that many instances run in parallel threads (wasmtime releases the GIL while
    the guest runs). Pipelines' ``time_limit_s``, ``memory_limit_mb`` and
    ``instances`` and the CLI's ``--time-limit`` and ``--memory-limit`` all land
    here, so a bad value is refused with the same sentence everywhere; the
    error's ``setting`` names the pipeline key.

    >>> SandboxLimits(time_limit_s=2).memory_limit_bytes
    536870912
    """

    time_limit_s: float = 10.0
    memory_limit_mb: int = 512
    instances: int = 1
    min_shard: int = 512
    """Smallest shard worth a thread: below 2x this a batch runs on one instance."""

    def __attrs_post_init__(self) -> None:
        limit = self.time_limit_s
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int | float)
            or not math.isfinite(limit)
            or not 0 < limit <= _MAX_TIME_LIMIT_S
        ):
            raise ConfigurationError(
                f"time limit must be a number of seconds above 0 and at most "
                f"{_MAX_TIME_LIMIT_S:g}, got {limit!r}",
                setting="time_limit_s",
            )
        memory = self.memory_limit_mb
        if type(memory) is not int or not _MIN_MEMORY_MB <= memory <= _MAX_MEMORY_MB:
            raise ConfigurationError(
                f"memory limit must be a whole number of MiB from {_MIN_MEMORY_MB} (what "
                f"CPython itself needs inside the component) to {_MAX_MEMORY_MB}, got {memory!r}",
                setting="memory_limit_mb",
            )
        if type(self.instances) is not int or self.instances < 1:
            raise ConfigurationError(
                f"instances must be a whole number of at least 1, got {self.instances!r}",
                setting="instances",
            )

    @property
    def memory_limit_bytes(self) -> int:
        """The memory cap in bytes, as wasmtime takes it."""
        return self.memory_limit_mb << 20


Sandbox = SandboxLimits
"""The former name of :class:`SandboxLimits`, kept so that existing imports work."""
