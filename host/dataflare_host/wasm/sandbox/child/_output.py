"""What a guest prints, read while it prints: bounded at every moment, the rest counted.

The guest's stdout and stderr are FIFOs in the instance's capture folder, which
wasmtime opens as its WASI output files. A thread of the sandbox process reads
them as they fill, keeps at most :data:`OUTPUT_CAP_BYTES` per stream per
request and counts the rest, which it drops. Nothing the guest prints reaches
the disk, and memory holds at most the cap: a guest printing gigabytes in one
call costs neither (regular files grew by every byte until the call ended).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import threading
from pathlib import Path

__all__ = ["OUTPUT_CAP_BYTES", "GuestOutput"]

OUTPUT_CAP_BYTES = 64 * 1024
"""Most guest output kept per stream and request; the rest is dropped with a marker."""

_CHUNK = 64 * 1024
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Linux's, named in Python 3.10+
_INFO, _WARNING = 20, 30  # logging's levels: importing logging costs a sandbox process ~5 ms


class _Stream:
    __slots__ = ("dropped", "fd", "keep", "kept", "level", "name", "path")

    def __init__(self, path: Path, name: str, level: int) -> None:
        os.mkfifo(path, 0o600)
        self.path = path
        self.name = name
        self.level = level
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with contextlib.suppress(OSError):  # a roomier pipe: fewer stalls of a chatty guest
            fcntl.fcntl(self.fd, _F_SETPIPE_SZ, 1 << 20)
        # A writer of our own keeps the FIFO from ever reporting its end: the reader
        # then never spins on a hang-up, whenever wasmtime opens or closes its end.
        self.keep = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        self.kept = bytearray()
        self.dropped = 0

    def pump(self) -> None:
        """Read what is waiting; keep up to the cap, count the rest."""
        while True:
            try:
                data = os.read(self.fd, _CHUNK)
            except BlockingIOError:
                return
            if not data:
                return
            room = OUTPUT_CAP_BYTES - len(self.kept)
            if room > 0:
                self.kept += data[:room]
            self.dropped += max(0, len(data) - max(room, 0))

    def close(self) -> None:
        for fd in (self.keep, self.fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class GuestOutput:
    """The guest's two output FIFOs in ``folder`` and the thread that reads them."""

    def __init__(self, folder: Path) -> None:
        self.stdout_path = folder / "stdout"
        self.stderr_path = folder / "stderr"
        self._streams = [
            _Stream(self.stdout_path, "stdout", _INFO),
            _Stream(self.stderr_path, "stderr", _WARNING),
        ]
        self._lock = threading.Lock()
        self._wake_read, self._wake_write = os.pipe()
        self._reader = threading.Thread(target=self._read, name="guest-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        poller = select.poll()
        by_fd = {stream.fd: stream for stream in self._streams}
        for fd in (*by_fd, self._wake_read):
            poller.register(fd, select.POLLIN)
        while True:
            for fd, _ in poller.poll():
                if fd == self._wake_read:
                    return
                with self._lock:
                    by_fd[fd].pump()

    def drain(self) -> list[tuple[int, str]]:
        """What the guest printed since the last drain, as (log level, line), capped,
        with a marker line per stream saying how many bytes were dropped."""
        lines: list[tuple[int, str]] = []
        with self._lock:
            for stream in self._streams:
                stream.pump()  # the request has returned: what it wrote is in the pipe
                data, dropped = bytes(stream.kept), stream.dropped
                stream.kept.clear()
                stream.dropped = 0
                lines.extend(
                    (stream.level, line)
                    for line in data.decode("utf-8", errors="replace").splitlines()
                )
                if dropped:
                    lines.append(
                        (_WARNING, f"[{dropped:,} more bytes of guest {stream.name} dropped]")
                    )
        return lines

    def close(self) -> None:
        """Stop the reader and remove the FIFOs (safe to call twice)."""
        if self._reader.is_alive():
            os.write(self._wake_write, b"x")
            self._reader.join()
        for fd in (self._wake_read, self._wake_write):
            with contextlib.suppress(OSError):
                os.close(fd)
        for stream in self._streams:
            stream.close()
