"""The sandbox process's main loop: runs component instances for the host, which can kill it.

Runs in the sandbox process. Forked by the sandbox server
(:mod:`dataflare_host.wasm.sandbox.server._main`), or started by the host as
``python -I -S -c BOOT`` when none runs; either way it runs :func:`main`. It
reads requests from stdin and answers on stdout, one length-prefixed pickle
each way (:mod:`dataflare_host.wasm.sandbox.protocol`; both ends are this package: the
guest never writes to this channel, it only returns values that this process
lifts and checks the shape of). Why a process: wasmtime's epoch deadline stops
running wasm code but not a blocking WASI call (``time.sleep`` in the guest), so
the only limit that holds whatever the guest does is a process the host kills.

Requests (tuples): ``("load", path, cache_root)``, ``("instantiate",
memory_bytes, time_limit_s, label, interface)``, ``("call", name, args,
time_limit_s)``, ``("drop",)``, ``("modules",)`` (the names of the modules
this process imported) and ``("environ",)`` (its environment). They are
answered one at a time, in order; a thread reads the next ones meanwhile, so
the host can send a call while the one before it runs (the guest then starts
it the moment it answers, with no round trip in between).
A ``bytes`` argument is passed to the export as Latin-1 text, and the framing
fields of an output (``kept``, ``records``, ``accumulator``) come back as bytes.
Answers: ``("ok", value, output)``, ``("trap", reason, timed_out, output)`` or
``("error", message)`` where ``output`` is what the guest printed during the
request, capped. A load's ``value`` is the path of the artifact it compiled
(None when the component was cached): the host then evicts old artifacts.

This process starts before every plugin's first record, so it stays lean: it
imports only wasmtime, the standard library and the protocol (never
``dataflare``, attrs or ``importlib.metadata``; ``tests/wasm/test_sandbox_start.py``
and ``tests/unit/test_layout.py`` check), and the host starts it with ``-I -S``
and an explicit ``sys.path`` (:data:`~dataflare_host.wasm.sandbox.protocol.BOOT`).
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
from pathlib import Path
from typing import IO, Any

from dataflare_host.wasm.sandbox.protocol import read_frame, write_frame

__all__ = ["main", "preload"]

_TEXT_FIELDS = ("kept", "records", "accumulator")


def _as_text(arg: Any) -> Any:
    # Every byte string the contract carries is Latin-1 text (wit/plugin.wit);
    # the host sends bytes so that this process, not the host's, converts them.
    return arg.decode("latin-1") if type(arg) is bytes else arg


def _texts_as_bytes(value: Any) -> Any:
    """The output's framing texts as bytes, when they are Latin-1 (else left for the
    host's decoder to refuse): a megabyte of high code points pickles 2x slower."""
    for field in _TEXT_FIELDS:
        text = getattr(value, field, None)
        if type(text) is str:
            with contextlib.suppress(UnicodeEncodeError):
                setattr(value, field, text.encode("latin-1"))
    return value


def preload() -> None:
    """Import what serving requests needs (wasmtime above all), ahead of the first.

    The sandbox server calls it once, so every process it forks has them.
    """
    from dataflare_host.wasm.sandbox.child import _instance, _wasmtime_engine  # noqa: F401


def compile_only(component: str, cache_root: str) -> None:
    """Compile ``component`` into ``cache_root``'s compile cache (the program
    :data:`~dataflare_host.wasm.sandbox.protocol.COMPILE` runs) and print the artifact
    written, if any."""
    from dataflare_host.wasm.sandbox.child._wasmtime_engine import (
        ComponentError,
        WasmtimeEngine,
    )

    try:
        loaded = WasmtimeEngine().load(Path(component), Path(cache_root))
    except ComponentError as exc:
        sys.stderr.write(f"{exc}\n")
        sys.exit(1)
    if loaded.compiled is not None:
        sys.stdout.write(str(loaded.compiled))


def main(scratch: str) -> None:
    """Serve requests until the host closes stdin (or kills this process).

    ``scratch`` is a private folder of this process: each instance's guest
    output is captured in a folder of its own inside it.
    """
    try:
        _serve(scratch)
    finally:
        # Let go by the host (stdin closed: the host exits, or never closed its
        # plugin), the process removes its folder itself; killed, the host does.
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)


def _serve(scratch: str) -> None:
    # The protocol owns the real stdout; anything else printed here (a library's
    # warning) goes to stderr instead of corrupting a frame.
    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    requests = _read_ahead(sys.stdin.buffer)

    from dataflare_host.wasm.sandbox.child._instance import GuestInstance, GuestTrap
    from dataflare_host.wasm.sandbox.child._wasmtime_engine import (
        ComponentError,
        wasmtime_engine,
    )
    from dataflare_host.wasm.sandbox.plugin_sources import write_sources

    engine = wasmtime_engine()
    component: Any = None
    sources: Path | None = None
    instance: GuestInstance | None = None
    instances = loads = 0
    while True:
        request = requests.get()
        if request is None:  # stdin closed
            return
        op = request[0]
        try:
            if op == "load":
                loaded = engine.load(Path(request[1]), Path(request[2]))
                component, compiled, sources = loaded.component, loaded.compiled, None
                if loaded.sources is not None:
                    loads += 1
                    sources = Path(scratch) / f"sources-{loads}"
                    write_sources(loaded.sources, sources)
                reply: tuple[Any, ...] = ("ok", None if compiled is None else str(compiled), [])
            elif op == "instantiate":
                _, memory_bytes, time_limit_s, label, interface = request
                if instance is not None:
                    instance.close()
                instance = None
                instances += 1
                capture = Path(scratch) / str(instances)
                instance = GuestInstance(
                    engine,
                    component,
                    memory_bytes,
                    time_limit_s,
                    label,
                    interface,
                    capture,
                    sources,
                )
                reply = ("ok", None, instance.drain_output())
            elif op == "call":
                _, name, args, time_limit_s = request
                if instance is None:
                    # Sent behind a call that trapped (which dropped the instance): the
                    # host kills this process rather than read this, but never crash on it.
                    raise ComponentError("no instance: the call before this one trapped")
                value = instance.call(name, tuple(map(_as_text, args)), time_limit_s)
                reply = ("ok", _texts_as_bytes(value), instance.drain_output())
            elif op == "modules":  # what this process imported: tests keep it lean
                reply = ("ok", sorted(sys.modules), [])
            elif op == "environ":  # tests: a forked process has its host's, not the server's
                reply = ("ok", dict(os.environ), [])
            elif op == "drop":
                if instance is not None:
                    instance.close()
                instance = None
                reply = ("ok", None, [])
            else:
                reply = ("error", f"unknown request {op!r}")
        except GuestTrap as trap:
            output = instance.drain_output() if instance is not None else []
            if instance is not None:
                instance.close()
            instance = None  # never reuse an instance that trapped
            reply = ("trap", str(trap), trap.timed_out, output)
        except ComponentError as exc:
            reply = ("error", str(exc))
        try:
            write_frame(channel, reply)
        except BrokenPipeError:
            return


def _read_ahead(stream: IO[bytes]) -> queue.SimpleQueue[tuple[Any, ...] | None]:
    """The requests on ``stream``, read (and unpickled) by a thread of their own; None
    once it closes (or breaks).

    Reading while the guest runs keeps the pipe drained: the host's write of the
    next batch returns at once instead of blocking until this call ends.
    """
    requests: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()

    def read() -> None:
        try:
            while True:
                requests.put(read_frame(stream))
        except (EOFError, OSError):
            requests.put(None)

    threading.Thread(target=read, name="requests", daemon=True).start()
    return requests


# By hand, to debug: python -m dataflare_host.wasm.sandbox.child._main DIR
if __name__ == "__main__":
    main(sys.argv[1])
