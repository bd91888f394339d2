"""The build's last phase: compile the new component for this host, into the compile cache.

A component is machine-independent; running it needs it compiled for this
CPU by wasmtime, which is most of a first run's wait. Done here, at build
time, the first ``dataflare test --wasm`` or pipeline maps the compiled
artifact instead of compiling (the cache is the one sandbox processes read,
keyed by the component's content, the wasmtime version and the engine's
settings).

And how long each phase took, so the next build can say what to expect.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from dataflare import PluginIOError
from dataflare_host._cache import cache_root, trusted_folder
from dataflare_host._ownership import untrusted

__all__ = ["compile_for_this_host", "last_duration", "remember_duration"]

_DURATIONS_FILE = "durations.json"


def compile_for_this_host(component: Path) -> None:
    """Compile ``component`` with the sandbox's engine settings into the compile cache.

    A fresh engine, not the process's shared one: the compiled code is not
    kept in this process, which may never run it. Raises :class:`PluginIOError`
    for a file that cannot be read or is not a component.
    """
    # Imported here: wasmtime is heavy, and only a build that compiles needs it.
    from dataflare_host.wasm.sandbox.child._wasmtime_engine import ComponentError, SharedEngine

    # The folders the sandbox processes will map artifacts from, checked as they are.
    trusted_folder("keys")
    root = trusted_folder("compiled").parent
    try:
        SharedEngine().load(component, root)
    except ComponentError as exc:
        raise PluginIOError(str(exc)) from exc


def _durations_path() -> Path:
    return cache_root() / _DURATIONS_FILE


def last_duration(phase: str) -> float | None:
    """How many seconds ``phase`` took in the last build on this host (None: not known).

    A file another user could have written is not believed (it would only skew a
    progress line, but the cache's files are all held to one rule).
    """
    path = _durations_path()
    if untrusted(path, folder=False) is not None:
        return None
    with contextlib.suppress(OSError, ValueError, AttributeError):
        value = json.loads(path.read_text(encoding="utf-8")).get(phase)
        if isinstance(value, (int, float)) and value >= 0:
            return float(value)
    return None


def remember_duration(phase: str, seconds: float) -> None:
    """Keep ``seconds`` as the latest duration of ``phase`` (an estimate for the next build)."""
    path = _durations_path()
    durations: dict[str, object] = {}
    with contextlib.suppress(OSError, ValueError):
        loaded = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            durations = loaded
    durations[phase] = round(seconds, 3)
    # A lost update only loses an estimate: no lock, just an atomic replace.
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(fd, 0o644)  # writable by this user alone, whatever the umask
            handle.write(json.dumps(durations))
        partial.replace(path)
