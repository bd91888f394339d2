"""Workers as Ray actors: the same tasks as local worker processes, placed by Ray.

Each actor loads the pipeline's plugins itself from the pipeline file (so the
file and its plugins must be at the same path on every node: a shared or
synced directory). A wasmtime store cannot be pickled, so nothing but the file
name crosses to the actor. Actors ask for a quarter of a CPU: on a small
machine whole CPUs per actor starve Ray's own tasks.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dataflare_host.pipeline._errors import PipelineError

__all__ = ["ACTOR_CPUS", "RayBackend", "import_ray", "join_ray"]

log = logging.getLogger("dataflare.engine")

ACTOR_CPUS = 0.25
_START_TIMEOUT_S = 600.0


def import_ray() -> Any:
    """The ray module, or a PipelineError saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise PipelineError(
            "engine: ray needs Ray, which is not installed; install it with "
            "pip install 'dataflare-plugins[ray]'"
        ) from exc
    return ray


def join_ray(ray: Any, address: str | None) -> None:
    """Join the Ray cluster at ``address`` (None: start a local one) unless joined already;
    a PipelineError names the address when that fails."""
    if ray.is_initialized():
        return
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise PipelineError(f"cannot start or join Ray at {address or 'local'}: {exc}") from exc


class _Actor:
    """The remote side: a worker core in a Ray actor."""

    def __init__(self, pipeline_file: str) -> None:
        from dataflare_host.pipeline.engines._worker_core import WorkerCore

        self.core = WorkerCore(pipeline_file)
        self.core.settle_gc()

    def where(self) -> str:
        import ray

        return f"pid {os.getpid()} on node {ray.get_runtime_context().get_node_id()[:8]}"

    def pid(self) -> int:
        return os.getpid()

    def handle(self, payload: bytes) -> bytes:
        return self.core.handle(payload)


class RayBackend:
    """One actor per worker slot; a dead actor is replaced by a new one (ours, not Ray's
    restart, so the in-flight task is retried exactly as a local worker's)."""

    kind = "ray"

    def __init__(self, pipeline_file: Path, workers: int, address: str | None) -> None:
        ray = import_ray()
        self._ray = ray
        join_ray(ray, address)
        self._file = str(pipeline_file)
        self._remote = ray.remote(_Actor)
        self._actors: list[Any] = [None] * workers
        self._refs: dict[int, Any] = {}

    def actor(self, slot: int) -> Any:
        """The actor handle of a slot (tests kill it)."""
        return self._actors[slot]

    def spawn(self, slot: int) -> str:
        """Start a new actor for ``slot`` and wait until its plugins are loaded."""
        self.launch(slot)
        return self.await_ready(slot)

    def launch(self, slot: int) -> None:
        """Start a new actor for ``slot`` (it loads the plugins while others start)."""
        self.kill(slot)
        self._actors[slot] = self._remote.options(
            num_cpus=ACTOR_CPUS, max_restarts=0, scheduling_strategy="SPREAD"
        ).remote(self._file)

    def await_ready(self, slot: int) -> str:
        """Wait until launched actor ``slot`` loaded its plugins; where it runs."""
        actor = self._actors[slot]
        try:
            where = self._ray.get(actor.where.remote(), timeout=_START_TIMEOUT_S)
        except Exception as exc:  # Ray wraps the actor's own error in its types
            self._actors[slot] = None
            self._ray.kill(actor)
            cause = getattr(exc, "cause", None) or exc
            raise PipelineError(f"worker-{slot + 1} (Ray actor) could not start: {cause}") from exc
        return str(where)

    def send(self, slot: int, payload: bytes) -> None:
        """Call the actor; the answer is collected in :meth:`wait`."""
        self._refs[slot] = self._actors[slot].handle.remote(payload)

    def wait(self, slots: Sequence[int], timeout: float) -> list[tuple[int, bytes | None]]:
        """Answers of busy actors; None for one that died."""
        refs = {self._refs[slot]: slot for slot in slots if slot in self._refs}
        if not refs:
            return []
        done, _ = self._ray.wait(list(refs), num_returns=1, timeout=timeout)
        if done:
            more, _ = self._ray.wait(list(refs), num_returns=len(refs), timeout=0)
            done = list({*done, *more})
        answers: list[tuple[int, bytes | None]] = []
        for ref in done:
            slot = refs[ref]
            del self._refs[slot]
            try:
                answers.append((slot, self._ray.get(ref)))
            except self._ray.exceptions.RayActorError:
                answers.append((slot, None))
        return answers

    def kill(self, slot: int) -> None:
        """Kill a slot's actor (no restart: :meth:`spawn` makes a new one)."""
        actor = self._actors[slot]
        self._actors[slot] = None
        self._refs.pop(slot, None)
        if actor is not None:
            self._ray.kill(actor, no_restart=True)

    def close(self) -> None:
        """Kill every actor (the Ray cluster itself is left running)."""
        for slot in range(len(self._actors)):
            self.kill(slot)
