"""Workers as Ray actors, one per slot: what the chain's actors and the partition workers'
actors share (joining Ray, starting, awaiting, killing; Ray itself imported only here,
and only when a pipeline asks for it).

Actors ask for a quarter of a CPU: on a small machine whole CPUs per actor starve
Ray's own tasks. A dead actor is replaced by a new one (ours, not Ray's restart),
so that what it was doing is retried exactly as a local worker's would be.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Sequence
from typing import Any

from dataflare_host.pipeline._errors import PipelineError

__all__ = ["RayActorSlots", "actor_path", "actor_place", "import_ray", "join_ray", "leave_ray"]

_ACTOR_CPUS = 0.25
_PROBE_TIMEOUT_S = 10.0  # to open a TCP connection to the cluster's address
_START_TIMEOUT_S = 600.0  # an actor's first task may compile a WASM plugin (cached afterwards)

log = logging.getLogger("dataflare.pipeline")


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


class _Membership:
    """Whether this process joined Ray for its runs, and how many runs use it: the last
    one to end leaves (runs in threads of one program share one membership)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ours = False  # joined here, not by the program before its runs
        self.users = 0
        self.printer: Any = None  # Ray's own, while ours stands in for it (see below)


_membership = _Membership()


def join_ray(ray: Any, address: str | None) -> None:
    """Join the Ray cluster at ``address`` (None: start a local one) unless joined already,
    and count the caller as a user until :func:`leave_ray`; a PipelineError names the
    address when joining fails."""
    with _membership.lock:
        if not ray.is_initialized():
            _check_answers(address)
            try:
                ray.init(
                    address=address,
                    include_dashboard=False,
                    log_to_driver=False,
                    logging_level=logging.WARNING,
                )
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise PipelineError(
                    f"cannot start or join Ray at {address or 'local'}: {exc}"
                ) from exc
            _membership.ours = True
            _membership.printer = _quiet_cluster_errors()
        _membership.users += 1


def _check_answers(address: str | None) -> None:
    """Raise a one-line PipelineError when nothing listens at ``address`` (``host:port``
    or ``ray://host:port``): Ray itself would retry for minutes, logging every try."""
    reason = _silent(address)
    if reason is not None:
        raise PipelineError(
            f"cannot join Ray at {address}: nothing answers there ({reason}); start the "
            "cluster (ray start --head) or fix address: (--ray-address)"
        )


def _silent(address: str | None) -> str | None:
    """Why nothing answers at ``address`` (a TCP connection refused or timed out), or None
    when something does or the address is a form Ray resolves itself."""
    if address is None or address in ("auto", "local"):
        return None
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return None
    try:
        socket.create_connection((host, int(port)), timeout=_PROBE_TIMEOUT_S).close()
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


def leave_ray(ray: Any) -> bool:
    """The caller no longer uses Ray; leave it if this process joined it and no other run
    uses it. Whether it left (the job's actors then end with it)."""
    with _membership.lock:
        _membership.users -= 1
        if _membership.users > 0 or not _membership.ours:
            return False
        _membership.ours = False
        ray.shutdown()
        _restore_cluster_errors(_membership.printer)
        _membership.printer = None
        return True


def _quiet_cluster_errors() -> Any:
    """Send the cluster's error messages for this job to the log (debug) instead of
    stdout; Ray's own printer, to restore, or None when this Ray has none to replace.

    A driver's Ray prints them on stdout whatever ``log_to_driver`` says: a dead
    actor is a paragraph with colour codes (an OOM killer's possible part in it...)
    in the middle of a stdout sink's records, beside our own one line saying which
    worker died and what happens next. Ray has no setting for it: its printer
    function is replaced while this process is Ray's member for its runs only.
    """
    try:
        from ray._private import worker as ray_worker
    except ImportError:  # pragma: no cover - another Ray's layout: it keeps printing
        return None
    printer = getattr(ray_worker, "print_to_stdstream", None)
    if printer is None:  # pragma: no cover
        return None

    def to_log(data: dict[str, Any], ignore_prefix: bool = False) -> None:
        for line in data.get("lines", ()):
            log.debug("ray (%s): %s", data.get("pid"), line)

    ray_worker.print_to_stdstream = to_log
    return printer


def _restore_cluster_errors(printer: Any) -> None:
    if printer is not None:
        from ray._private import worker as ray_worker

        ray_worker.print_to_stdstream = printer


def actor_path(file: str | os.PathLike[str]) -> str:
    """``file`` as an actor can open it: absolute, since an actor's working folder is
    not the driver's (and on another node the file must be at the same path)."""
    return os.path.abspath(file)


def actor_place() -> str:
    """Where the calling actor runs: ``pid 1234 on node ab12cd34`` (inside an actor)."""
    import ray

    return f"pid {os.getpid()} on node {ray.get_runtime_context().get_node_id()[:8]}"


class RayActorSlots:
    """One actor of ``actor_class`` per slot, on the cluster at ``address``; each slot has
    at most one call awaited (:meth:`_await`, collected by :meth:`_finished`)."""

    kind = "ray"

    def __init__(self, actor_class: type, workers: int, address: str | None) -> None:
        self._ray = import_ray()
        join_ray(self._ray, address)
        self._member = True
        self._remote = self._ray.remote(actor_class)
        self._actors: list[Any] = [None] * workers
        self._pending: dict[int, Any] = {}  # slot -> the reference of its call awaited
        self._started: set[int] = set()  # slots given an actor once (the next replaces it)

    def actor(self, slot: int) -> Any:
        """The actor handle of a slot (tests kill it)."""
        return self._actors[slot]

    def _start(self, slot: int, *args: Any, **options: Any) -> None:
        """A new actor for ``slot`` (the one before it killed), built with ``args``."""
        if slot in self._started:
            self._check_cluster()
        self._started.add(slot)
        self.kill(slot)
        self._actors[slot] = self._remote.options(
            num_cpus=_ACTOR_CPUS, max_restarts=0, scheduling_strategy="SPREAD", **options
        ).remote(*args)

    def _check_cluster(self) -> None:
        """Before replacing a dead actor: a one-line PipelineError when the cluster's GCS
        no longer answers (a lost cluster, not a lost actor; Ray would wait a minute for
        it, then end this process)."""
        address = self._ray.get_runtime_context().gcs_address
        reason = _silent(address)
        if reason is not None:
            raise PipelineError(
                f"lost the Ray cluster: nothing answers at {address} ({reason}); what was "
                "done is in the checkpoint: rerun once the cluster is back"
            )

    def _placed(self, slot: int) -> str:
        """Wait until slot ``slot``'s actor is up; where it runs (its ``where`` method)."""
        actor = self._actors[slot]
        try:
            return str(self._ray.get(actor.where.remote(), timeout=_START_TIMEOUT_S))
        except Exception as exc:  # Ray wraps the actor's own error in its types
            self.kill(slot)
            cause = getattr(exc, "cause", None) or exc
            raise PipelineError(f"worker-{slot + 1} (Ray actor) could not start: {cause}") from exc

    def _await(self, slot: int, reference: Any) -> None:
        """Collect ``reference`` (a call of slot ``slot``'s actor) in :meth:`_finished`."""
        self._pending[slot] = reference

    def _finished(self, slots: Sequence[int], timeout: float) -> list[tuple[int, Any]]:
        """The awaited calls of ``slots`` that ended, waiting up to ``timeout`` for one:
        (slot, the call's value), or (slot, None) for an actor that died."""
        pending = {self._pending[slot]: slot for slot in slots if slot in self._pending}
        if not pending:
            return []
        done, _ = self._ray.wait(list(pending), num_returns=1, timeout=timeout)
        if done:
            more, _ = self._ray.wait(list(pending), num_returns=len(pending), timeout=0)
            done = list({*done, *more})
        ended: list[tuple[int, Any]] = []
        for reference in done:
            slot = pending[reference]
            del self._pending[slot]
            try:
                ended.append((slot, self._ray.get(reference)))
            except self._ray.exceptions.RayActorError:
                ended.append((slot, None))
        return ended

    def ended(self, slot: int) -> str | None:
        """How a slot's actor ended: not known here (Ray tells its own logs)."""
        return None

    def kill(self, slot: int) -> None:
        """Kill a slot's actor (no restart: a new one is started in its place)."""
        actor = self._actors[slot]
        self._actors[slot] = None
        self._pending.pop(slot, None)
        if actor is not None:
            self._ray.kill(actor, no_restart=True)

    def close(self) -> None:
        """Kill every actor, or leave Ray when this process joined it and no other run uses
        it (the cluster itself is left running); safe twice."""
        if not self._member:
            return
        self._member = False
        # Leaving ends this job, and Ray ends the job's actors with it: killing them one by
        # one first made leaving (or the interpreter's exit) wait for each.
        if not leave_ray(self._ray):
            for slot in range(len(self._actors)):
                self.kill(slot)
        self._actors = [None] * len(self._actors)
        self._pending.clear()
