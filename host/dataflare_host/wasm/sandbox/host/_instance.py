"""Component instances in sandbox processes that the host kills when a limit passes.

Runs in the host process. An :class:`Instance` is one instance of a component,
living in a sandbox process (:mod:`dataflare_host.wasm.sandbox.child._main`).
Every request carries a deadline,
and a process that has not answered shortly after it is killed: a CPU loop, a
blocking WASI call such as ``time.sleep`` and a start function that never
returns all end there, in components not built from this SDK too. The wasmtime
engine compiles no epoch checks (they slow guest code down): the kill is the limit.

Processes are reused: one whose instance was dropped cleanly (or trapped, or
returned past its limit) goes back to a small pool, so replacing an instance
costs an instantiation; only a kill costs a process start.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import attrs

from dataflare import ConfigurationError, PluginIOError
from dataflare_host._cache import cache_max_bytes, evict, trusted_folder
from dataflare_host._text import escape_controls
from dataflare_host._waiting import waiting
from dataflare_host.wasm.build._wit import WIT_INTERFACE
from dataflare_host.wasm.sandbox.host._limits import SandboxLimits
from dataflare_host.wasm.sandbox.host._process import (
    SandboxProcess,
    Unanswered,
    acquire,
    prestart,
    release,
)
from dataflare_host.wasm.sandbox.host._trap import Trap
from dataflare_host.wasm.sandbox.protocol import RACY_WINDOW_NS, pack

__all__ = [
    "COMPILE_TIMEOUT_S",
    "KILL_GRACE_S",
    "Call",
    "Instance",
    "PreparedCall",
    "evict_compiled",
    "prepare_call",
]

log = logging.getLogger("dataflare.guest")

KILL_GRACE_S = 0.2
"""How long past its time limit a request may take before the process is killed:
room for the request and answer to cross the pipe (the process times the call
itself, so a call that ends within this grace but after the limit still fails)."""

COMPILE_TIMEOUT_S = 600.0
"""How long loading (compiling) a component may take: seconds for CPython's 18 MB."""


class Instance:
    """One instance of a component in a sandbox process, under the sandbox's limits.

    Raises :class:`ConfigurationError` when the component cannot be loaded or
    instantiated (a start function that runs past the time limit included);
    :meth:`call` raises :class:`Trap` when the guest trapped, hit a limit or had
    to be killed. What the guest prints is logged unless ``show_output`` is false.
    """

    def __init__(
        self, path: Path, sandbox: SandboxLimits, label: str, *, show_output: bool = True
    ) -> None:
        self._sandbox = sandbox
        self._label = label
        self._show_output = show_output
        self._outstanding = False  # a call begun and not waited for
        self._process: SandboxProcess | None = acquire()
        try:
            # The file's identity, not only its path: a component rebuilt or swapped
            # at the same path must be loaded again, not answered by the old one.
            try:
                stat = path.stat()
            except OSError as exc:
                raise ConfigurationError(
                    f"cannot read WASM component {path}: {exc.strerror}"
                ) from exc
            # ctime too: mtime can be set back after a rewrite of the same size.
            key = (
                f"{path.resolve()}|{stat.st_dev}|{stat.st_ino}|{stat.st_size}|"
                f"{stat.st_mtime_ns}|{stat.st_ctime_ns}"
            )
            if self._process.loaded != key:
                self._process.loaded = None
                # The first use of a component compiles it (seconds); later ones map
                # the cached artifact (milliseconds) and say nothing.
                with waiting(f"loading {path.name} (its first use compiles it)"):
                    answer = self._process.request(
                        ("load", str(path.resolve()), str(_checked_cache_root())),
                        COMPILE_TIMEOUT_S,
                    )
                compiled = self._answer(answer)
                if compiled is not None:
                    evict_compiled(Path(compiled))
                # A file changed less than RACY_WINDOW_NS ago could change again
                # without its stat moving: it is loaded (and checked) every time.
                settled = time.time_ns() - stat.st_ctime_ns > RACY_WINDOW_NS
                self._process.loaded = key if settled else None
            answer = self._process.request(
                (
                    "instantiate",
                    sandbox.memory_limit_bytes,
                    sandbox.time_limit_s,
                    label,
                    WIT_INTERFACE,
                ),
                sandbox.time_limit_s + KILL_GRACE_S,
            )
            self._answer(answer)
        except Unanswered as exc:
            self._process = None
            what = (
                f"the sandbox process died ({exc.died})"
                if exc.died
                else f"it did not finish within the {sandbox.time_limit_s:g} s time limit"
            )
            raise ConfigurationError(
                f"{label} could not be loaded: {what}; does its start function loop or block?"
            ) from exc
        except Trap as trap:
            self.close()
            raise ConfigurationError(f"{label} cannot be instantiated: {trap}") from trap
        except BaseException:
            self.close()
            raise

    def _answer(self, answer: tuple[Any, ...]) -> Any:
        status = answer[0]
        if status == "ok":
            self._log(answer[2])
            return answer[1]
        if status == "trap":
            self._log(answer[3])
            raise Trap(answer[1], timed_out=answer[2])
        raise ConfigurationError(answer[1])

    def _log(self, output: list[tuple[int, str]]) -> None:
        if not self._show_output:
            return
        for level, line in output:
            log.log(level, "%s: %s", self._label, escape_controls(line))

    def call(self, name: str, *args: Any) -> Any:
        """Call the export ``name``; its lifted value (a Trap when the guest failed hard)."""
        return self.send(prepare_call(self._sandbox, name, *args)).wait()

    def send(self, prepared: PreparedCall) -> Call:
        """Send a call :func:`prepare_call` made (perhaps while this instance was busy) and
        return at once; :meth:`Call.wait` gives what :meth:`call` would. Until then the
        instance takes no other request."""
        if self._process is None or self._outstanding:
            raise PluginIOError(f"{self._label}: the instance is closed or busy")
        self._outstanding = True
        try:
            self._process.send_packed(prepared.payload)
        except Unanswered as exc:
            return Call(self, prepared.limit, failed=exc)
        return Call(self, prepared.limit)

    def _finish(self, call: Call) -> Any:
        process = self._process
        if process is None:  # closed (so killed) while the call ran
            raise Trap("the instance was closed before the call's answer", timed_out=False)
        try:
            if call.failed is not None:
                raise call.failed
            answer = process.receive(call.deadline)
        except Unanswered as exc:
            self._process = None
            if exc.died:
                raise Trap(f"the sandbox process died ({exc.died})", timed_out=False) from exc
            prestart()  # the next instance's process boots while the caller handles this
            raise Trap(
                f"still running {KILL_GRACE_S:g} s past the {call.limit:g} s time limit; "
                "its sandbox process was killed",
                timed_out=True,
            ) from exc
        finally:
            self._outstanding = False
        try:
            return self._answer(answer)
        except Trap:
            # The process dropped the trapped instance itself and can serve others.
            self._process = None
            release(process)
            raise

    def close(self) -> None:
        """Drop the instance; its process goes back to the pool (safe to call twice).

        With a call begun and not waited for, the process is killed instead: its
        answer would come before the drop's, and the guest may be mid-batch.
        """
        process, self._process = self._process, None
        if process is None:
            return
        if self._outstanding:
            process.kill()
            return
        try:
            answer = process.request(("drop",), 10.0)
        except Unanswered:
            return
        if answer[0] == "ok":
            self._log(answer[2])
        release(process)


def evict_compiled(artifact: Path) -> None:
    """After a sandbox process compiled ``artifact``: keep the compile cache under its cap.

    The host does it, not the sandbox process, which imports nothing of the
    host. A bad cap (``DATAFLARE_CACHE_MAX_MB``) is logged, not raised: it
    must not fail the load it follows.
    """
    try:
        evict(artifact.parent, cache_max_bytes(), keep=artifact)
    except ConfigurationError as exc:
        logging.getLogger("dataflare.wasm").warning("compile cache not evicted: %s", exc)


@attrs.frozen
class PreparedCall:
    """A call's request, packed ahead of sending it (see :func:`prepare_call`)."""

    payload: bytes
    limit: float


def prepare_call(sandbox: SandboxLimits, name: str, *args: Any) -> PreparedCall:
    """Pack a call of the export ``name`` for :meth:`Instance.send`: the packing (a
    batch's pickle) can then happen while the instance is still busy with another."""
    limit = sandbox.time_limit_s
    return PreparedCall(pack(("call", name, args, limit)), limit)


class Call:
    """A call sent to an :class:`Instance` and not yet answered (see :meth:`Instance.send`)."""

    def __init__(self, instance: Instance, limit: float, failed: Unanswered | None = None) -> None:
        self._instance = instance
        self.limit = limit
        self.deadline = time.monotonic() + limit + KILL_GRACE_S
        self.failed = failed
        self._waited = False

    def answered(self, timeout_s: float) -> bool:
        """Whether :meth:`wait` would return without waiting (within ``timeout_s``)."""
        process = self._instance._process
        left = self.deadline - time.monotonic()
        if left <= 0 and process is not None and not self._waited:
            left = process.charged_deadline(self.deadline) - time.monotonic()
        if self._waited or self.failed is not None or process is None or left <= 0:
            return True  # past the deadline, wait() kills at once
        return process.answered(min(timeout_s, left))

    def wait(self) -> Any:
        """The call's lifted value; raises :class:`Trap` as :meth:`Instance.call` does."""
        if self._waited:
            raise PluginIOError("a call's answer was already taken")
        self._waited = True
        return self._instance._finish(self)


def _checked_cache_root() -> Path:
    """The cache root, once its ``compiled/`` and ``keys/`` are checked (ConfigurationError
    naming the path otherwise): a sandbox process maps the artifacts it finds there."""
    trusted_folder("keys")
    return trusted_folder("compiled").parent
