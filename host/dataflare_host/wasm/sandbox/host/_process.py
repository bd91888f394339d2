"""Sandbox processes (:class:`SandboxProcess`) and their request channel, as the host holds them.

Runs in the host process. Starting a sandbox process is most of a WASM
plugin's cold start: a new interpreter and wasmtime's imports, or a cheaper
fork from the sandbox server (:mod:`._spawn` picks). This module imports only
the standard library (and the protocol, which is as lean),
so the host can start a process (:func:`prestart`) the moment it knows a WASM
plugin will run, *before* it imports the rest of the backend: both then happen
at once. The process is handed over by :func:`acquire` to the first instance
that needs one.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import fcntl
import importlib.util
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

from dataflare_host.wasm.sandbox._charged_time import Stopwatch
from dataflare_host.wasm.sandbox.host._spawn import Spawned, readable, start, start_wanted_server
from dataflare_host.wasm.sandbox.host._spawn import server_address as _server_address
from dataflare_host.wasm.sandbox.protocol import HEADER, pack

__all__ = [
    "import_roots",
    "SandboxProcess",
    "Unanswered",
    "acquire",
    "interpreter_flags",
    "prestart",
    "release",
    "server_address",
    "stop_idle",
    "widen_pipes",
]

_MAX_IDLE = 4


def import_roots() -> list[str]:
    """The folders a sandbox process imports from: wasmtime's and this package's.

    Not the SDK's: a sandbox process never imports it (the host evicts old
    compiled artifacts itself), and a checkout keeps the SDK in a folder of its own.
    """
    roots: list[str] = []
    for package in ("wasmtime", "dataflare_host"):
        # Found, not imported: prestart() runs before the host imports wasmtime.
        spec = importlib.util.find_spec(package)
        assert spec is not None
        assert spec.origin is not None
        root = str(Path(spec.origin).parent.parent)
        if root not in roots:
            roots.append(root)
    return roots


def interpreter_flags() -> list[str]:
    """The interpreter flags of a sandbox process (and of the server that forks them).

    -I: no PYTHON* variables, no user site, no current folder on the path; -S: no
    site-packages scan or .pth files (the roots are given instead). The process
    needs nothing else, and its interpreter starts sooner.
    """
    return ["-I", "-S"] + (["-B"] if sys.flags.dont_write_bytecode else [])


# A batch's frame fits whole (the default 64 KiB pipe held a quarter of a 1,000-record one).
_PIPE_BYTES = 1 << 20


def widen_pipes(*fds: int) -> None:
    """Let the pipes behind ``fds`` hold a whole batch, where the system allows it.

    With the default size the host's write of a batch sent ahead blocked until
    the sandbox process's reader thread had drained the pipe several times over:
    the host's main loop waited on a process that was busy running the guest.
    A system that refuses (a lower ``/proc/sys/fs/pipe-max-size``, the user's pipe
    quota spent) keeps its default, which only costs those waits.
    """
    if not hasattr(fcntl, "F_SETPIPE_SZ"):  # not Linux
        return
    for fd in fds:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)


def server_address() -> str | None:
    """Where the sandbox server for this host's code listens (None: the server is off)."""
    return _server_address(import_roots(), interpreter_flags())


class SandboxProcess:
    """One sandbox process and its request channel.

    ``loaded`` names the component file the process has loaded (its identity),
    None when none or when it must be loaded again.
    """

    def __init__(self) -> None:
        # Made and removed here, not in the process: a killed process cleans nothing.
        self.scratch = tempfile.mkdtemp(prefix="dataflare-sandbox-")
        try:
            self.proc: Spawned = start(
                self.scratch,
                import_roots(),
                interpreter_flags(),
                stderr_shown=bool(os.environ.get("DATAFLARE_DEBUG_SANDBOX")),
            )
        except BaseException:
            self._remove_scratch()
            raise
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self._in: IO[bytes] = self.proc.stdin
        self._out: IO[bytes] = self.proc.stdout
        widen_pipes(self._in.fileno(), self._out.fileno())
        self.loaded: str | None = None
        self._booted = False
        # One per request in flight, oldest first, each started when its request was
        # sent (one sent behind another counts that one's waits too: a kill comes
        # later for it, never sooner).
        self._watches: collections.deque[Stopwatch] = collections.deque()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def request(self, message: tuple[Any, ...], timeout_s: float) -> tuple[Any, ...]:
        """Send ``message``; the answer, or :class:`Unanswered` after ``timeout_s``."""
        self.send_packed(pack(message))
        return self.receive(time.monotonic() + timeout_s)

    def send(self, message: tuple[Any, ...]) -> None:
        """Send ``message`` without waiting for its answer (:meth:`receive` reads it).

        Raises :class:`Unanswered` when the process is gone.
        """
        self.send_packed(pack(message))

    def send_packed(self, payload: bytes) -> None:
        """Send a message :func:`pack` made (so it can be made before the process is free)."""
        # The guest runs on the process's main thread: its waits for a CPU are the
        # machine's, not the plugin's, and move the request's deadline (see receive).
        # That thread alone: summed over threads, waits of threads that contend with
        # each other could cover the whole wall clock and stop no loop at all.
        self._watches.append(Stopwatch(self.proc.pid, main_thread=True))
        try:
            self._in.write(HEADER.pack(len(payload)))
            self._in.write(payload)  # no concatenation: a batch is a megabyte
            self._in.flush()
        except (BrokenPipeError, OSError) as exc:
            raise Unanswered(self._death()) from exc

    def answered(self, timeout_s: float) -> bool:
        """Whether an answer (or the process's end) is waiting to be read, within ``timeout_s``."""
        return readable(self._out.fileno(), timeout_s)

    def charged_deadline(self, deadline: float) -> float:
        """``deadline`` moved later by the time the process has waited for a CPU since the
        oldest unanswered request was sent: a limit counts what the plugin consumed, not
        what a busy machine withheld (:mod:`dataflare_host.wasm.sandbox._charged_time`)."""
        if not self._watches:
            return deadline
        return deadline + self._watches[0].read().waited_s

    def receive(self, deadline: float) -> tuple[Any, ...]:
        """The answer to the oldest request unanswered; :class:`Unanswered` (the process killed)
        when none came by ``deadline`` (a :func:`time.monotonic` time, moved later by
        the time the process waited for a CPU: see :meth:`charged_deadline`)."""
        fd = self._out.fileno()
        charged = deadline
        while True:
            remaining = charged - time.monotonic()
            if remaining <= 0:
                charged = self.charged_deadline(deadline)  # from the original, each time
                remaining = charged - time.monotonic()
            if remaining <= 0:
                if self.answered(0.0):  # answered in time, read late
                    break
                self.kill()
                raise Unanswered(None)
            if self.answered(min(remaining, 0.25)):
                break
        header = _read_exactly(fd, HEADER.size)
        if header is None:
            raise Unanswered(self._death())
        (size,) = HEADER.unpack(header)
        body = _read_exactly(fd, size)
        if body is None:
            raise Unanswered(self._death())
        answer: tuple[Any, ...] = pickle.loads(body)
        if self._watches:
            self._watches.popleft()
        if not self._booted:  # the first answer: the process has booted
            self._booted = True
            start_wanted_server()
        return answer

    def _death(self) -> str:
        code = self.proc.wait()
        self._clean_up()
        return f"signal {-code}" if code < 0 else f"exit code {code}"

    def _remove_scratch(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)

    def _clean_up(self) -> None:
        """Once the process is gone: its folder and both ends of its channel."""
        self._remove_scratch()
        for stream in (self._in, self._out):
            with contextlib.suppress(OSError):
                stream.close()

    def kill(self) -> None:
        """Stop the process at once (it may be blocked inside the guest)."""
        if self.alive:
            self.proc.kill()
        self.proc.wait()
        self._clean_up()

    def stop(self) -> None:
        """End the process politely (it exits when its stdin closes)."""
        with contextlib.suppress(OSError):
            self._in.close()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._remove_scratch()
        with contextlib.suppress(OSError):
            self._out.close()


class Unanswered(Exception):
    """The process did not answer: killed at the deadline (``died`` None) or it died."""

    def __init__(self, died: str | None) -> None:
        super().__init__(died or "deadline passed")
        self.died = died


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks: list[bytes] = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


class _Pool:
    """Idle sandbox processes, reused by later instances."""

    def __init__(self) -> None:
        self._idle: list[SandboxProcess] = []
        self._lock = threading.Lock()
        atexit.register(self.close)

    def prestart(self) -> None:
        with self._lock:
            if any(process.alive for process in self._idle):
                return
        process = SandboxProcess()
        with self._lock:
            self._idle.append(process)

    def acquire(self) -> SandboxProcess:
        with self._lock:
            while self._idle:
                process = self._idle.pop()
                if process.alive:
                    return process
                process.kill()  # reaps it and removes its scratch folder
        return SandboxProcess()

    def release(self, process: SandboxProcess) -> None:
        with self._lock:
            if process.alive and len(self._idle) < _MAX_IDLE:
                self._idle.append(process)
                return
        process.stop()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for process in idle:
            process.stop()


_pool = _Pool()


def prestart() -> None:
    """Start a sandbox process now, unless one is idle: the next :func:`acquire` gets it.

    For the host to call as soon as it knows a WASM plugin will run (a
    ``.wasm`` given to ``load_plugin``, a pipeline with a WASM step), before
    it imports the WASM backend: the process boots meanwhile.
    """
    _pool.prestart()


def stop_idle() -> None:
    """Stop the idle sandbox processes (a prestarted one, those given back): for a host
    that will run no WASM plugin itself for a while; :func:`acquire` starts new ones."""
    _pool.close()


def acquire() -> SandboxProcess:
    """An idle sandbox process (the prestarted one, say), or a new one."""
    return _pool.acquire()


def release(process: SandboxProcess) -> None:
    """Give back a process whose instance was dropped cleanly (kept if there is room)."""
    _pool.release(process)
