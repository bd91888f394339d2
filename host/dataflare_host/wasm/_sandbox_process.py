"""Component instances in child processes that the host kills when a limit passes.

An :class:`Instance` is one instance of a component, living in a sandbox
process (:mod:`dataflare_host.wasm._worker`). Every request carries a deadline:
the process enforces the time limit itself with wasmtime's epoch interruption
(a trap, and the process stays usable), and when it has not answered shortly
after the limit (the guest is blocked in a WASI call such as ``time.sleep``, or
a start function never returns) the host kills it. So the limit holds whatever
the guest does, including components not built from this SDK.

Processes are reused: one whose instance was dropped cleanly goes back to a
small pool, so replacing an instance costs an instantiation (~30 ms), not a
process start.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import logging
import os
import pickle
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

from dataflare import ConfigurationError, PluginIOError
from dataflare_host._cache import cache_root
from dataflare_host._text import escape_controls
from dataflare_host._waiting import waiting
from dataflare_host.wasm._engine import RACY_WINDOW_NS
from dataflare_host.wasm._instance import Trap
from dataflare_host.wasm._sandbox import Sandbox
from dataflare_host.wasm._wit import WIT_INTERFACE
from dataflare_host.wasm._worker import BOOT, HEADER

__all__ = ["COMPILE_TIMEOUT_S", "KILL_GRACE_S", "Instance"]

log = logging.getLogger("dataflare.guest")

KILL_GRACE_S = 0.5
"""How long past its time limit a request may take before the process is killed
(the epoch deadline normally ends running code at the limit itself)."""

COMPILE_TIMEOUT_S = 600.0
"""How long loading (compiling) a component may take: seconds for CPython's 18 MB."""

_MAX_IDLE = 4


def _import_roots() -> list[str]:
    """The folders a sandbox process imports from: wasmtime's, this package's, the SDK's.

    A cached start imports only the first two; a compile (seconds anyway) also
    evicts old artifacts with the host's cache module, which needs the SDK.
    """
    roots: list[str] = []
    for package in ("wasmtime", "dataflare_host", "dataflare"):
        spec = importlib.util.find_spec(package)  # the host imported all three by now
        assert spec is not None
        assert spec.origin is not None
        root = str(Path(spec.origin).parent.parent)
        if root not in roots:
            roots.append(root)
    return roots


class _Process:
    """One sandbox process and its request channel."""

    def __init__(self) -> None:
        # Made and removed here, not in the process: a killed process cleans nothing.
        self.scratch = tempfile.mkdtemp(prefix="dataflare-sandbox-")
        # -I: no PYTHON* variables, no user site, no current folder on the path;
        # -S: no site-packages scan or .pth files (the roots are given instead).
        # The process needs nothing else, and its interpreter starts ~5 ms sooner.
        flags = ["-I", "-S"] + (["-B"] if sys.flags.dont_write_bytecode else [])
        try:
            self.proc = subprocess.Popen(
                [sys.executable, *flags, "-c", BOOT, self.scratch, *_import_roots()],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=None if os.environ.get("DATAFLARE_DEBUG_SANDBOX") else subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C on the terminal is the host's to handle
            )
        except BaseException:
            self._remove_scratch()
            raise
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self._in: IO[bytes] = self.proc.stdin
        self._out: IO[bytes] = self.proc.stdout
        self.loaded: str | None = None

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def request(self, message: tuple[Any, ...], timeout_s: float) -> tuple[Any, ...]:
        """Send ``message``; the answer, or :class:`_Unanswered` after ``timeout_s``."""
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self._in.write(HEADER.pack(len(payload)))
            self._in.write(payload)  # no concatenation: a batch is a megabyte
            self._in.flush()
        except (BrokenPipeError, OSError) as exc:
            raise _Unanswered(self._death()) from exc
        deadline = time.monotonic() + timeout_s
        fd = self._out.fileno()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise _Unanswered(None)
            ready, _, _ = select.select([fd], [], [], min(remaining, 0.25))
            if ready:
                break
        header = _read_exactly(fd, HEADER.size)
        if header is None:
            raise _Unanswered(self._death())
        (size,) = HEADER.unpack(header)
        body = _read_exactly(fd, size)
        if body is None:
            raise _Unanswered(self._death())
        answer: tuple[Any, ...] = pickle.loads(body)
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


class _Unanswered(Exception):
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
        self._idle: list[_Process] = []
        self._lock = threading.Lock()
        atexit.register(self.close)

    def acquire(self) -> _Process:
        with self._lock:
            while self._idle:
                process = self._idle.pop()
                if process.alive:
                    return process
                process.kill()  # reaps it and removes its scratch folder
        return _Process()

    def release(self, process: _Process) -> None:
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


class Instance:
    """One instance of a component in a sandbox process, under the sandbox's limits.

    Raises :class:`ConfigurationError` when the component cannot be loaded or
    instantiated (a start function that runs past the time limit included);
    :meth:`call` raises :class:`Trap` when the guest trapped, hit a limit or had
    to be killed.
    """

    def __init__(self, path: Path, sandbox: Sandbox, label: str) -> None:
        self._sandbox = sandbox
        self._label = label
        self._process: _Process | None = _pool.acquire()
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
                        ("load", str(path.resolve()), str(cache_root())), COMPILE_TIMEOUT_S
                    )
                self._answer(answer)
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
        except _Unanswered as exc:
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
        for level, line in output:
            log.log(level, "%s: %s", self._label, escape_controls(line))

    def call(self, name: str, *args: Any) -> Any:
        """Call the export ``name``; its lifted value (a Trap when the guest failed hard)."""
        if self._process is None:
            raise PluginIOError(f"{self._label}: the instance is closed")
        limit = self._sandbox.time_limit_s
        try:
            answer = self._process.request(("call", name, args, limit), limit + KILL_GRACE_S)
        except _Unanswered as exc:
            self._process = None
            if exc.died:
                raise Trap(f"the sandbox process died ({exc.died})", timed_out=False) from exc
            raise Trap(
                f"still running {KILL_GRACE_S:g} s past the {limit:g} s time limit (blocked "
                "in a system call?); the sandbox process was killed",
                timed_out=True,
            ) from exc
        try:
            return self._answer(answer)
        except Trap:
            # The process dropped the trapped instance itself and can serve others.
            process, self._process = self._process, None
            _pool.release(process)
            raise

    def close(self) -> None:
        """Drop the instance; its process goes back to the pool (safe to call twice)."""
        process, self._process = self._process, None
        if process is None:
            return
        try:
            answer = process.request(("drop",), 10.0)
        except _Unanswered:
            return
        if answer[0] == "ok":
            self._log(answer[2])
        _pool.release(process)
