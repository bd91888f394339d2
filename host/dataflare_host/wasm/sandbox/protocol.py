"""What crosses between the host, a sandbox process and the fork server: standard library only.

Both ends import this module, so a frame, a header or a constant has one
definition. The host imports it without wasmtime, and a sandbox process
without ``dataflare`` or attrs.

- The host and a sandbox process speak on the process's stdin and stdout, one
  length-prefixed pickle each way (:data:`HEADER`, :func:`pack`,
  :func:`read_frame`, :func:`write_frame`). The host starts the process as
  ``python -I -S -c BOOT`` (:data:`BOOT`), or has the fork server fork one.
- The host and the fork server speak on a Unix socket (``SOCK_SEQPACKET``):
  :data:`SERVER_BOOT` starts a server, :data:`PID` carries a child's pid and
  then its exit code, :data:`ACK` and :data:`STOP` are the host's bytes.
- A sandbox process hands WIT records and variants to the host as
  :class:`GuestRecord` and :class:`GuestVariant`, so the host unpickles an
  answer without importing wasmtime.
- :data:`RACY_WINDOW_NS` is the rule both sides use before memoising a file by
  its identity (its ``stat``).
"""

from __future__ import annotations

import pickle
import struct
from typing import IO, Any

__all__ = [
    "COMPILE",
    "ACK",
    "BOOT",
    "HEADER",
    "PID",
    "RACY_WINDOW_NS",
    "SERVER_BOOT",
    "STOP",
    "GuestRecord",
    "GuestVariant",
    "pack",
    "read_frame",
    "write_frame",
]

# --- the host and a sandbox process ------------------------------------------------------

BOOT = (
    "import sys; sys.path[:0] = sys.argv[2:]; "
    "from dataflare_host.wasm.sandbox.child._main import main; main(sys.argv[1])"
)
"""The ``-c`` program of a sandbox process. Its first argument is the process's
scratch folder (the host makes and removes it, even after a kill), the others
the folders to import from: started with ``-S``, it reads no ``site-packages``
and no ``.pth`` file."""

COMPILE = (
    "import sys; sys.path[:0] = sys.argv[3:]; "
    "from dataflare_host.wasm.sandbox.child._main import compile_only; "
    "compile_only(sys.argv[1], sys.argv[2])"
)
"""The ``-c`` program that compiles one component for this host into the compile cache, as
a sandbox process's first load would, and exits. Its arguments: the component, the cache
root, then the folders to import from. It prints the artifact it wrote (nothing when one
was cached) and exits 1 with one line on stderr for a file that is not a component."""

HEADER = struct.Struct(">Q")
"""Frame header: the payload's length."""


def pack(message: Any) -> bytes:
    """A message as it crosses the channel (a frame's payload, without its header)."""
    return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


def read_frame(stream: IO[bytes]) -> Any:
    """One pickled message from ``stream``; raises EOFError when the stream ends."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        raise EOFError("the channel closed")
    (size,) = HEADER.unpack(header)
    payload = stream.read(size)
    if len(payload) < size:
        raise EOFError("the channel closed mid-message")
    return pickle.loads(payload)


def write_frame(stream: IO[bytes], message: Any) -> None:
    """Send one pickled message on ``stream``."""
    payload = pack(message)
    stream.write(HEADER.pack(len(payload)) + payload)
    stream.flush()


# --- the host and the fork server --------------------------------------------------------

SERVER_BOOT = (
    "import sys; sys.path[:0] = sys.argv[3:]; "
    "from dataflare_host.wasm.sandbox.server._main import serve; "
    "serve(sys.argv[1], float(sys.argv[2]))"
)
"""The ``-c`` program of a sandbox server (started with ``-I -S`` as a sandbox
process is): its socket's path, its idle time-out in seconds, then the folders
to import from."""

PID = struct.Struct(">q")
"""A child's pid, then its exit code, on the request's connection."""

ACK = b"k"
"""The host's byte once it holds a pidfd on the child: the server may reap it."""

STOP = b"stop"
"""A request without descriptors that makes the server exit (its children run on)."""

# --- both sides --------------------------------------------------------------------------

RACY_WINDOW_NS = 2_000_000_000
"""How old a file's last change must be before its key is memoised by its identity.

A file changed again within its own timestamp granularity (a jiffy, or 2 s on
FAT) can keep every ``stat`` field; one older than this when it was hashed
cannot change without its ctime moving (git's "racily clean" rule). The host
memoises the component a sandbox process loaded, the sandbox process a
component's artifact key."""

# --- what a sandbox process answers --------------------------------------------------------
# wasmtime-py lifts a record to ``wasmtime.component.Record`` and a variant to
# ``wasmtime.component.Variant``; pickled as such, the host would have to import
# wasmtime only to unpickle an answer. The sandbox process converts them to these
# two classes instead, with the same attribute names, so the host reads them as it
# read wasmtime's.


class GuestRecord:
    """A WIT record: one attribute per field (WIT's kebab-case names kept as wasmtime
    gives them).

    >>> GuestRecord({"consumed": 2}).consumed
    2
    """

    def __init__(self, fields: dict[str, Any]) -> None:
        self.__dict__.update(fields)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GuestRecord) and vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]  # mutable, like wasmtime's

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in vars(self).items())
        return f"GuestRecord({fields})"


class GuestVariant:
    """A WIT variant case: its ``tag`` and its ``payload`` (None for a case without one).

    >>> GuestVariant("configuration", "bad field").tag
    'configuration'
    """

    __slots__ = ("payload", "tag")

    def __init__(self, tag: str, payload: Any = None) -> None:
        self.tag = tag
        self.payload = payload

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GuestVariant) and (self.tag, self.payload) == (
            other.tag,
            other.payload,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"GuestVariant({self.tag!r}, {self.payload!r})"
