"""How the host starts a sandbox process: forked by a running sandbox server, else a new one.

A new interpreter with wasmtime imported takes ~60 ms, most of a WASM plugin's
cached cold start; a fork from :mod:`dataflare_host.wasm.sandbox.server._main` takes a
few. :func:`start` asks the server for a child first; when none answers, it
starts a process itself, as before, and starts a server in the background for
the next one (in this process or the next run). Either way the caller gets an
object with the :class:`subprocess.Popen` methods it uses (:class:`Spawned`).

The server's address is keyed by the interpreter, its flags, the import roots,
wasmtime's installed version and the size and time of the host's own modules,
so a server never forks stale code. ``DATAFLARE_SANDBOX_SERVER_IDLE_S`` sets
how long a server waits for a request before it exits (default
:data:`DEFAULT_IDLE_S`); ``0`` turns the server off (every sandbox process is
then a new interpreter).
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
import select
import signal
import stat
import subprocess
import sys
import threading
import time
import weakref
import zlib
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

from dataflare_host.wasm.sandbox.protocol import ACK, BOOT, PID, SERVER_BOOT, STOP

if TYPE_CHECKING:
    import socket

__all__ = [
    "DEFAULT_IDLE_S",
    "IDLE_ENV",
    "ForkedProcess",
    "Spawned",
    "answering_servers",
    "idle_seconds",
    "readable",
    "server_address",
    "start",
    "start_wanted_server",
    "servers_folder",
    "stop_servers",
]

IDLE_ENV = "DATAFLARE_SANDBOX_SERVER_IDLE_S"
"""Seconds a sandbox server waits for a request before it exits; ``0``: no server."""

DEFAULT_IDLE_S = 600.0
"""A server outlives a run by ten minutes: the next run in an edit loop starts at once."""

_MAX_SOCKET_PATH = 104  # sun_path holds 108 bytes on Linux, 104 on the BSDs

_STATUS_WAIT_S = 2.0  # the server reaps a child as soon as it ends; this is a ceiling
_REQUEST_TIMEOUT_S = 3.0  # past the server's 0.5 s for a silent peer ahead of us


class Spawned(Protocol):
    """What the host uses of a sandbox process (a :class:`subprocess.Popen` has it all)."""

    pid: int
    stdin: IO[bytes] | None
    stdout: IO[bytes] | None
    returncode: int | None

    def poll(self) -> int | None:
        """The exit code once the process ended, else None."""

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the end (:class:`subprocess.TimeoutExpired` after ``timeout``)."""

    def kill(self) -> None:
        """SIGKILL the process."""


def start(scratch: str, roots: list[str], flags: list[str], stderr_shown: bool) -> Spawned:
    """A sandbox process serving ``scratch``: forked by the server when one runs.

    ``roots`` are the folders it imports from and ``flags`` the interpreter's
    (a server is started with the same); ``stderr_shown`` gives it the host's
    stderr instead of ``/dev/null``.
    """
    address = server_address(roots, flags)
    # No socket file, no server: start at once rather than import socket to learn it.
    if address is not None and os.path.exists(address):
        forked = _fork(address, scratch, stderr_shown)
        if forked is not None:
            return forked
    process = subprocess.Popen(
        [sys.executable, *flags, "-c", BOOT, scratch, *roots],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=None if stderr_shown else subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C on the terminal is the host's to handle
    )
    if address is not None:
        with _lock:
            _wanted.setdefault(address, (roots, flags))
    return process


def start_wanted_server() -> None:
    """Start the server that :func:`start` found missing.

    The host calls it once a process it started itself has booted: the server's
    own boot (an interpreter and wasmtime) then runs beside the plugin's first
    records instead of slowing that process's start. A server this host started
    less than :data:`_REBOOT_AFTER_S` ago is still booting, not missing; one that
    exited since (idle, stopped, killed) is started again.
    """
    now = time.monotonic()
    with _lock:
        if not _wanted:
            return
        wanted = [
            (address, roots, flags)
            for address, (roots, flags) in _wanted.items()
            if now - _started.get(address, -_REBOOT_AFTER_S) >= _REBOOT_AFTER_S
        ]
        _started.update((address, now) for address, _, _ in wanted)
        _wanted.clear()
    for address, roots, flags in wanted:
        _start_server(address, roots, flags)


def idle_seconds() -> float:
    """The server's idle time-out from ``DATAFLARE_SANDBOX_SERVER_IDLE_S`` (0: no server)."""
    text = os.environ.get(IDLE_ENV, "").strip()
    if not text:
        return DEFAULT_IDLE_S
    try:
        return max(0.0, float(text))
    except ValueError:
        return DEFAULT_IDLE_S


def server_address(roots: list[str], flags: list[str]) -> str | None:
    """Where the server for this code listens (in the cache folder's ``servers/``);
    None when the server is off, the platform has no pidfds (not Linux), the folder
    is not this user's alone, or the path is too long for a Unix socket (then every
    process starts fresh)."""
    if idle_seconds() <= 0 or not hasattr(os, "pidfd_open"):
        return None  # pidfds are Linux's (5.3+): elsewhere a process is a new interpreter
    folder = servers_folder()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(folder)
    except OSError:
        return None
    private = stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) & 0o077 == 0
    if not private or info.st_uid != os.getuid():
        return None
    address = os.path.join(folder, f"sandbox-{_code_key(tuple(roots), tuple(flags))}.sock")
    return address if len(os.fsencode(address)) < _MAX_SOCKET_PATH else None


def servers_folder() -> Path:
    """The folder of the servers' sockets: ``servers/`` in the cache folder, so a
    test suite's cache (``DATAFLARE_CACHE_DIR``) has servers of its own."""
    from dataflare_host._cache import cache_root

    return cache_root() / "servers"


@functools.lru_cache(maxsize=4)
def _code_key(roots: tuple[str, ...], flags: tuple[str, ...]) -> str:
    """A digest of everything a server's children run before they read a request.

    The interpreter, its flags and import roots; wasmtime's installed version
    (its ``.dist-info`` folder) and the size and time of the modules a child runs.
    CRC-32 and Adler-32 rather than hashlib: this runs before a sandbox process
    starts, and hashlib's import alone costs ~6 ms of that cold start.
    """
    parts = [sys.executable, sys.version, *flags, *roots]
    for root in roots:
        with contextlib.suppress(OSError):
            parts += sorted(name for name in os.listdir(root) if name.startswith("wasmtime-"))
    sandbox = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    wasm = os.path.dirname(sandbox)
    # What a child runs: the protocol, child/, server/, and the packages' __init__ on the way.
    folders = (
        sandbox,
        os.path.join(sandbox, "child"),
        os.path.join(sandbox, "server"),
        wasm,
        os.path.dirname(wasm),
    )
    for folder in folders:
        with contextlib.suppress(OSError), os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.endswith(".py"):
                    info = entry.stat()
                    parts.append(f"{entry.path}|{info.st_size}|{info.st_mtime_ns}")
    data = "\n".join(sorted(parts)).encode()
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"


_lock = threading.Lock()
_wanted: dict[str, tuple[list[str], list[str]]] = {}  # address -> (roots, flags)
_started: dict[str, float] = {}  # address -> when this host started a server there
_REBOOT_AFTER_S = 10.0
_servers: list[subprocess.Popen[bytes]] = []  # held, so none is reported as never waited for


def _start_server(address: str, roots: list[str], flags: list[str]) -> None:
    """Start a server for ``address`` in the background."""
    with contextlib.suppress(OSError):
        _servers.append(
            subprocess.Popen(
                [sys.executable, *flags, "-c", SERVER_BOOT, address, str(idle_seconds()), *roots],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # outlives this run; no terminal signal reaches it
                # Not this host's environment: the server outlives the run, and its block
                # (/proc/PID/environ) is what every child it forks shows too. A child
                # gets its requesting host's environment in the request instead.
                env=_server_environment(),
            )
        )


SERVER_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
"""The only variables a sandbox server is started with (locale and time zone rules:
the interpreter and wasmtime read nothing else from the environment at import)."""


def _server_environment() -> dict[str, str]:
    return {name: os.environ[name] for name in SERVER_ENVIRONMENT if name in os.environ}


def answering_servers(folder: Path | None = None) -> list[Path]:
    """The sockets in ``folder`` (default :func:`servers_folder`) a server answers on."""
    import socket  # only now: see _fork

    answering = []
    for address in sorted((folder or servers_folder()).glob("sandbox-*.sock")):
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as probe:
            probe.settimeout(5.0)
            try:
                probe.connect(str(address))
            except OSError:
                continue
        answering.append(address)
    return answering


def stop_servers(folder: Path | None = None) -> int:
    """Ask every server in ``folder`` (default :func:`servers_folder`) to exit (their
    children run on); how many answered. A test suite calls it as it ends, and
    ``dataflare cache clear``."""
    import socket  # only now: see _fork

    stopped = 0
    for address in sorted((folder or servers_folder()).glob("sandbox-*.sock")):
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as connection:
            connection.settimeout(5.0)
            try:
                connection.connect(str(address))  # a stale socket refuses: skipped
                connection.send(STOP)
                connection.recv(1)  # the server closes the connection as it leaves
            except OSError:
                continue
        stopped += 1
    return stopped


def _fork(address: str, scratch: str, stderr_shown: bool) -> ForkedProcess | None:
    """A child of the server at ``address``, or None (no server, or it failed us)."""
    # Imported only when a server's socket file exists: socket alone is ~3 ms
    # of the start of a process when there is no server.
    import socket

    connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    connection.settimeout(_REQUEST_TIMEOUT_S)  # a stalled server: start a process ourselves
    try:
        connection.connect(address)
    except OSError:
        connection.close()
        return None
    stdin_read, stdin_write = os.pipe()
    stdout_read, stdout_write = os.pipe()
    stderr = 2 if stderr_shown else os.open(os.devnull, os.O_WRONLY)
    ours = [stdin_write, stdout_read]
    pidfd: int | None = None
    try:
        request = pickle.dumps((scratch, dict(os.environ), os.getcwd()))
        socket.send_fds(connection, [request], [stdin_read, stdout_write, stderr])
        reply = connection.recv(PID.size)
        if len(reply) != PID.size:
            raise OSError("the sandbox server ended the request")
        (pid,) = PID.unpack(reply)
        pidfd = os.pidfd_open(pid)
        connection.send(ACK)
    except OSError:
        connection.close()  # unacknowledged: the server kills the child it forked
        for fd in ours + ([] if pidfd is None else [pidfd]):
            os.close(fd)
        return None
    finally:
        for fd in (stdin_read, stdout_write) + (() if stderr_shown else (stderr,)):
            os.close(fd)
    connection.settimeout(None)
    return ForkedProcess(
        pid, pidfd, connection, os.fdopen(stdin_write, "wb"), os.fdopen(stdout_read, "rb")
    )


class ForkedProcess:
    """A sandbox process the server forked, with the :class:`Spawned` methods.

    The host is not its parent: it signals it through a pidfd (which never names
    another process, even once the pid is reused) and learns its exit code from
    the server, which reaps it.
    """

    def __init__(
        self,
        pid: int,
        pidfd: int,
        connection: socket.socket,
        stdin: IO[bytes],
        stdout: IO[bytes],
    ) -> None:
        self.pid = pid
        self.args = ["sandbox process", str(pid)]
        self.stdin: IO[bytes] | None = stdin
        self.stdout: IO[bytes] | None = stdout
        self.returncode: int | None = None
        self._pidfd = pidfd
        self._connection = connection
        self._killed = False
        self._release = weakref.finalize(self, _close, pidfd, connection)
        self._release.atexit = False  # the pool stops its processes at exit, after finalizers

    def poll(self) -> int | None:
        """The exit code once the process ended, else None."""
        if self.returncode is None and readable(self._pidfd, 0.0):
            self._collect()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the end (:class:`subprocess.TimeoutExpired` after ``timeout``)."""
        if self.returncode is None:
            if not readable(self._pidfd, timeout):
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            self._collect()
        assert self.returncode is not None
        return self.returncode

    def kill(self) -> None:
        """SIGKILL the process (nothing when it already ended)."""
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            self._killed = True

    def _collect(self) -> None:
        code: int | None = None
        with contextlib.suppress(OSError):
            if readable(self._connection.fileno(), _STATUS_WAIT_S):
                reply = self._connection.recv(PID.size)
                if len(reply) == PID.size:
                    (code,) = PID.unpack(reply)
        if code is None:  # the server ended before its child: the status is lost
            code = -signal.SIGKILL if self._killed else 1
        self.returncode = code
        self._release()


def readable(fd: int, timeout: float | None) -> bool:
    """Whether ``fd`` has something to read (or its end) within ``timeout`` seconds
    (None: wait). poll, not select: a host's descriptors can pass select's 1024."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else max(0.0, timeout) * 1000))


def _close(pidfd: int, connection: socket.socket) -> None:
    with contextlib.suppress(OSError):
        os.close(pidfd)
    connection.close()
