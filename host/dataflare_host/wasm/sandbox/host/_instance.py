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

A call may be sent while the one before it runs (:data:`CALLS_IN_FLIGHT` at
most): the sandbox process starts it the moment it answers the first, so the
guest does not wait for the host between batches. Answers come in order; a
call queued behind one that failed hard (a trap, a kill) never ran, and raises
:class:`Abandoned` so that its caller sends it again elsewhere.
"""

from __future__ import annotations

import collections
import logging
import threading
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
    "CALLS_IN_FLIGHT",
    "COMPILE_TIMEOUT_S",
    "KILL_GRACE_S",
    "Abandoned",
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

CALLS_IN_FLIGHT = 2
"""Most calls sent to one instance and not yet answered: the one running, one queued."""


class Abandoned(Exception):
    """A call queued behind one that trapped or was killed: it never ran (send it again)."""


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
        self._calls: collections.deque[Call] = collections.deque()  # sent, not answered
        self._lock = threading.Lock()  # the process and the calls
        self._reading = threading.Lock()  # held while an answer is awaited
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

    @property
    def in_flight(self) -> int:
        """Calls sent and not yet answered."""
        return len(self._calls)

    @property
    def closed(self) -> bool:
        """Whether the instance was closed (or lost: a trap, a kill)."""
        return self._process is None

    def send(self, prepared: PreparedCall) -> Call:
        """Send a call :func:`prepare_call` made (perhaps while this instance was busy) and
        return at once; :meth:`Call.wait` gives what :meth:`call` would. Up to
        :data:`CALLS_IN_FLIGHT` calls may be out at once; each runs when the one
        before it is answered."""
        with self._lock:
            process = self._process
            if process is None or len(self._calls) >= CALLS_IN_FLIGHT:
                raise PluginIOError(f"{self._label}: the instance is closed or busy")
            call = Call(self, prepared.limit, queued=bool(self._calls))
            self._calls.append(call)
            try:
                process.send_packed(prepared.payload)
            except Unanswered as exc:
                # Dead: the call running in it (this one, or the one it queued behind)
                # died with it.
                self._process = None
                died = Trap(f"the sandbox process died ({exc.died})", timed_out=False)
                died.__cause__ = exc
                self._fail_all(died)
        return call

    def _finish(self, call: Call) -> Any:
        with self._reading:  # answers come in order: one reader at a time
            while call.answer is None and call.failed is None:
                self._read_next()
        if call.failed is not None:
            raise call.failed
        assert call.answer is not None
        return self._answer(call.answer)

    def _read_next(self) -> None:
        """Read the oldest call's answer, or fail it (and abandon the calls behind it)."""
        with self._lock:
            process = self._process
            head = self._calls[0]
            if head.deadline is None:  # raced with the answer before it: runs from now
                head.start()
            deadline = head.deadline
        assert deadline is not None
        failure: Trap | None = None
        try:
            if process is None:  # closed (so killed) while the call ran
                raise Trap("the instance was closed before the call's answer", timed_out=False)
            answer = process.receive(deadline)
        except Unanswered as exc:
            if exc.died:
                failure = Trap(f"the sandbox process died ({exc.died})", timed_out=False)
            else:
                prestart()  # the next instance's process boots while the caller handles this
                failure = Trap(
                    f"still running {KILL_GRACE_S:g} s past the {head.limit:g} s time limit; "
                    "its sandbox process was killed",
                    timed_out=True,
                )
            failure.__cause__ = exc
        except Trap as trap:
            failure = trap
        with self._lock:
            if failure is not None:
                self._process = None
                self._fail_all(failure)
                return
            self._calls.popleft()
            head.answer = answer
            if self._calls:  # the next call runs from now
                self._calls[0].start()
            if answer[0] == "trap" and process is not None and self._process is process:
                # The process dropped the trapped instance itself and can serve others,
                # unless a call queued behind is still to come out of it.
                self._process = None
                if self._calls:
                    process.kill()
                    self._abandon_rest()
                else:
                    release(process)

    def _fail_all(self, failure: Trap) -> None:
        if self._calls:
            self._calls.popleft().failed = failure
        self._abandon_rest()

    def _abandon_rest(self) -> None:
        while self._calls:
            self._calls.popleft().failed = Abandoned()

    def close(self) -> None:
        """Drop the instance; its process goes back to the pool (safe to call twice).

        With a call sent and not waited for, the process is killed instead: its
        answer would come before the drop's, and the guest may be mid-batch. A
        call queued behind then raises :class:`Abandoned`.
        """
        with self._lock:
            process, self._process = self._process, None
            if process is None:
                return
            if self._calls:
                process.kill()
                self._abandon_rest()
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
    """A call sent to an :class:`Instance` and not yet answered (see :meth:`Instance.send`).

    A call queued behind another has no deadline until that one is answered (it
    runs from then on).
    """

    def __init__(self, instance: Instance, limit: float, *, queued: bool = False) -> None:
        self._instance = instance
        self.limit = limit
        self.deadline: float | None = None
        self.answer: tuple[Any, ...] | None = None
        self.failed: BaseException | None = None
        self._waited = False
        if not queued:
            self.start()

    def start(self) -> None:
        """Its time counts from now (sent to an idle instance, or the call before answered)."""
        self.deadline = time.monotonic() + self.limit + KILL_GRACE_S

    def answered(self, timeout_s: float) -> bool:
        """Whether :meth:`wait` would return without waiting (within ``timeout_s``)."""
        if self._waited or self.answer is not None or self.failed is not None:
            return True
        process = self._instance._process
        if process is None:
            return True  # closed: wait() fails at once
        if self.deadline is None:  # queued: waiting means the call before it too
            time.sleep(timeout_s)
            return False
        left = self.deadline - time.monotonic()
        if left <= 0:
            left = process.charged_deadline(self.deadline) - time.monotonic()
        if left <= 0:
            return True  # past the deadline, wait() kills at once
        return process.answered(min(timeout_s, left))

    def wait(self) -> Any:
        """The call's lifted value; raises :class:`Trap` as :meth:`Instance.call` does, or
        :class:`Abandoned` when it was queued behind a call that failed hard."""
        if self._waited:
            raise PluginIOError("a call's answer was already taken")
        self._waited = True
        return self._instance._finish(self)


def _checked_cache_root() -> Path:
    """The cache root, once its ``compiled/`` and ``keys/`` are checked (ConfigurationError
    naming the path otherwise): a sandbox process maps the artifacts it finds there."""
    trusted_folder("keys")
    return trusted_folder("compiled").parent
