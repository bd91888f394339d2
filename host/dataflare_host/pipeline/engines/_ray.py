"""Workers as Ray actors: the same tasks as local worker processes, placed by Ray.

Each actor loads the pipeline's plugins itself from the pipeline file (so the
file and its plugins must be at the same path on every node: a shared or
synced directory). A wasmtime store cannot be pickled, so nothing but the file
name crosses to the actor. Starting, placing and killing actors is shared with
the partition workers' (:mod:`dataflare_host.pipeline._ray_actors`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from dataflare_host.pipeline._ray_actors import RayActorSlots, actor_path, actor_place

__all__ = ["RayBackend"]


class _Actor:
    """The remote side: a worker core in a Ray actor."""

    def __init__(self, pipeline_file: str) -> None:
        from dataflare_host.pipeline.engines._worker_core import WorkerCore

        # Ray reports an error raised here as a string with the traceback in it; raised by
        # where(), it reaches the driver as itself, to be told in one line.
        self._failure: Exception | None = None
        try:
            self.core = WorkerCore(pipeline_file)
        except Exception as exc:  # noqa: BLE001 - raised again by where()
            self._failure = exc
            return
        self.core.settle_gc()

    def where(self) -> str:
        if self._failure is not None:
            raise self._failure
        return actor_place()

    def pid(self) -> int:
        return os.getpid()

    def handle(self, payload: bytes) -> bytes:
        return self.core.handle(payload)


class RayBackend(RayActorSlots):
    """One actor per worker slot; a dead actor is replaced by a new one, and the in-flight
    task is retried exactly as a local worker's."""

    def __init__(self, pipeline_file: Path, workers: int, address: str | None) -> None:
        super().__init__(_Actor, workers, address)
        self._file = actor_path(pipeline_file)

    def spawn(self, slot: int) -> str:
        """Start a new actor for ``slot`` and wait until its plugins are loaded."""
        self.launch(slot)
        return self.await_ready(slot)

    def launch(self, slot: int) -> None:
        """Start a new actor for ``slot`` (it loads the plugins while others start)."""
        self._start(slot, self._file)

    def await_ready(self, slot: int) -> str:
        """Wait until launched actor ``slot`` loaded its plugins; where it runs."""
        return self._placed(slot)

    def send(self, slot: int, payload: bytes) -> None:
        """Call the actor; the answer is collected in :meth:`wait`."""
        self._await(slot, self._actors[slot].handle.remote(payload))

    def wait(self, slots: Sequence[int], timeout: float) -> list[tuple[int, bytes | None]]:
        """Answers of busy actors; None for one that died."""
        return self._finished(slots, timeout)
