"""The sandbox server: a process that has imported wasmtime and forks sandbox processes.

A sandbox process spends ~60 ms of a WASM plugin's cold start on a fresh
interpreter and wasmtime's imports, before it loads anything. The server pays
that once: it imports what a sandbox process imports, then waits on a Unix
socket, and for each request forks a child that becomes a sandbox process
(:func:`dataflare_host.wasm.sandbox.child._main.main`) on pipes the host sent along. A fork
is ~2 ms, so a host that finds a server running gets its sandbox process at
once; :mod:`dataflare_host.wasm.sandbox.host._spawn` is the host's side.

Why this is safe to share:

- the server itself never loads a component nor runs guest code; it is a single
  thread that only imports, forks and reaps, so each child starts from the same
  clean state a fresh interpreter would reach (and no lock held by another
  thread, as forking the host would risk);
- the server starts with only locale, time zone and PATH in its environment,
  never the first host's (it outlives that run, and its environment block, as
  ``/proc/PID/environ`` shows it, is every forked child's block too);
- a child takes the requesting host's environment, working folder, standard
  streams and a new session, as :class:`subprocess.Popen` would have given it;
- the socket lives in a folder only its user can enter, and the server refuses
  a peer of another user (``SO_PEERCRED``);
- its address is keyed by the interpreter and the code it forks (see the
  host's side), so an upgrade or an edited checkout starts a new server;
- it exits after ``idle_s`` seconds without a child or a request.

Protocol (``SOCK_SEQPACKET``, one message each way, then status): the host sends
a pickled ``(scratch, environment, working folder)`` with three descriptors
(the child's stdin, stdout and stderr); the server answers the child's pid
(``>q``); the host opens a pidfd on it and sends one byte, after which the
server may reap the child and sends its exit code (``>q``, as
:attr:`subprocess.Popen.returncode` gives it) when it ends. A reaped pid can be
reused, so the host signals the child only through its pidfd.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pickle
import select
import signal
import socket
import struct
import sys
import time

from dataflare_host.wasm.sandbox.protocol import ACK, PID, STOP

__all__ = ["serve"]

_REQUEST_TIMEOUT_S = 0.5  # our hosts send at once; a silent peer is dropped
_MAX_REQUEST = 1 << 20  # a pickled environment is a few kilobytes


class _Child:
    __slots__ = ("acknowledged", "connection")

    def __init__(self, connection: socket.socket) -> None:
        self.connection: socket.socket | None = connection  # None once the host hung up
        self.acknowledged = False

    def hear(self, pid: int) -> None:
        """Read what the host sent: its acknowledgement, or its hang-up."""
        assert self.connection is not None
        heard = self.connection.recv(1)
        if heard == ACK and not self.acknowledged:
            self.acknowledged = True
            return
        if not self.acknowledged:  # gone before it held a pidfd: it cannot kill this child
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # not reaped yet, so the pid is still the child's
            self.acknowledged = True
        if not heard:
            self.connection.close()
            self.connection = None


def serve(address: str, idle_s: float) -> None:
    """Fork a sandbox process per request on ``address`` until idle for ``idle_s`` seconds.

    Returns at once when another server already answers on ``address``.
    """
    from dataflare_host.wasm.sandbox.child import _main as child

    child.preload()  # every child starts with these imported: that is the point
    listener = _bind(address)
    if listener is None:
        return
    bound = os.stat(address).st_ino
    try:
        _loop(listener, idle_s, child.main)
    finally:
        # Only our own socket: after a restart the path may name a newer server's.
        with contextlib.suppress(OSError):
            if os.stat(address).st_ino == bound:
                os.unlink(address)
        listener.close()


def _bind(address: str) -> socket.socket | None:
    """The listening socket, or None when a live server holds ``address``.

    Servers starting at once serialise on a lock file beside the socket, so only
    one replaces a stale socket (left by a server that was killed).
    """
    with open(address + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            probe.connect(address)
            return None  # another server answers
        except OSError:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(address)
        finally:
            probe.close()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        listener.bind(address)
        listener.listen(64)
        return listener


def _loop(listener: socket.socket, idle_s: float, child_main: object) -> None:
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    os.set_blocking(wake_write, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wake-up fd is written
    signal.set_wakeup_fd(wake_write)
    children: dict[int, _Child] = {}
    last_activity = time.monotonic()
    while True:
        if children:
            timeout: float | None = None
        else:
            timeout = last_activity + idle_s - time.monotonic()
            if timeout <= 0:
                return
        connections = {
            child.connection.fileno(): pid
            for pid, child in children.items()
            if child.connection is not None
        }
        watched = [listener.fileno(), wake_read, *connections]
        # poll, not select: a busy server's descriptors can pass select's 1024.
        poller = select.poll()
        for fd in watched:
            poller.register(fd, select.POLLIN)
        try:
            events = poller.poll(None if timeout is None else timeout * 1000)
        except InterruptedError:
            continue
        ready = {fd for fd, _ in events}
        if wake_read in ready:
            with contextlib.suppress(BlockingIOError):
                while os.read(wake_read, 512):
                    pass
        for fd, pid in connections.items():
            if fd in ready:
                children[pid].hear(pid)
        _reap(children)
        if listener.fileno() in ready:
            last_activity = time.monotonic()
            if _accept(listener, children, (wake_read, wake_write), child_main) == "stop":
                return
        if children:
            last_activity = time.monotonic()


def _reap(children: dict[int, _Child]) -> None:
    """Reap the acknowledged children that ended and tell their hosts how."""
    for pid, child in list(children.items()):
        if not child.acknowledged:
            continue  # its pid must stay valid until the host holds a pidfd
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done, status = pid, 0
        if done == 0:
            continue
        del children[pid]
        if child.connection is not None:
            with contextlib.suppress(OSError):
                child.connection.send(PID.pack(os.waitstatus_to_exitcode(status)))
            child.connection.close()


def _accept(
    listener: socket.socket,
    children: dict[int, _Child],
    wake_fds: tuple[int, int],
    child_main: object,
) -> str:
    """Serve one request: fork a child, or ``"stop"`` when asked to exit."""
    connection, _ = listener.accept()
    # A peer that connects and says nothing must not stall every other host's start.
    connection.settimeout(_REQUEST_TIMEOUT_S)
    fds: list[int] = []
    try:
        credentials = connection.getsockopt(
            socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")
        )
        _, uid, _ = struct.unpack("3i", credentials)
        if uid != os.getuid():
            connection.close()
            return "refused"
        message, fds, _, _ = socket.recv_fds(connection, _MAX_REQUEST, 3)
        if message == STOP and not fds:
            connection.close()
            return "stop"
        if len(fds) != 3:
            raise ValueError("a request without its three descriptors")
        scratch, environment, folder = pickle.loads(message)
    except (OSError, ValueError, pickle.UnpicklingError, TypeError):
        for fd in fds:  # a malformed request's descriptors are not kept open here
            os.close(fd)
        connection.close()
        return "refused"
    # The child closes what is the server's: its socket objects (so none is closed
    # again by number later) and the wake-up pipe.
    servers_own = [listener, connection] + [
        child.connection for child in children.values() if child.connection is not None
    ]
    pid = os.fork()
    if pid == 0:
        _become_sandbox(
            servers_own, wake_fds, fds, scratch, environment, folder, child_main
        )  # never returns
    for fd in fds:
        os.close(fd)
    connection.settimeout(None)  # from here on, only the poll loop reads it
    try:
        connection.send(PID.pack(pid))
    except OSError:  # the host is gone: its child has nothing to serve
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        connection.close()
        return "refused"
    children[pid] = _Child(connection)
    return "forked"


def _become_sandbox(
    servers_own: list[socket.socket],
    wake_fds: tuple[int, int],
    fds: list[int],
    scratch: str,
    environment: dict[str, str],
    folder: str,
    child_main: object,
) -> None:
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for own in servers_own:
            own.close()
        for fd in wake_fds:
            os.close(fd)
        os.setsid()  # as start_new_session: a Ctrl-C on the host's terminal is the host's
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.environ.clear()
        os.environ.update(environment)
        with contextlib.suppress(OSError):
            os.chdir(folder)
        assert callable(child_main)
        child_main(scratch)
        code = 0
    except BaseException:  # noqa: BLE001 - reported on the host's stderr, then exit
        with contextlib.suppress(BaseException):
            import traceback  # here: the host imports this module's constants, not this

            traceback.print_exc()
            sys.stderr.flush()
    finally:
        os._exit(code)
