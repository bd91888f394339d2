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
import subprocess
import sys
from pathlib import Path

from dataflare import PluginIOError
from dataflare_host._cache import cache_root, trusted_folder
from dataflare_host._ownership import untrusted, write_private
from dataflare_host.wasm.sandbox.host._instance import evict_compiled
from dataflare_host.wasm.sandbox.host._process import import_roots, interpreter_flags
from dataflare_host.wasm.sandbox.protocol import COMPILE

__all__ = ["compile_for_this_host", "last_duration", "remember_duration"]

_DURATIONS_FILE = "durations.json"


def compile_for_this_host(component: Path) -> None:
    """Compile ``component`` with the sandbox's engine settings into the compile cache.

    In a process of its own, started as a sandbox process is: this process never imports
    wasmtime (a compile's memory peaks far above a host's), and the artifact is written
    exactly as a sandbox process would write it. Raises :class:`PluginIOError` for a file
    that cannot be read or is not a component.
    """
    # The folders the sandbox processes will map artifacts from, checked as they are.
    trusted_folder("keys")
    root = trusted_folder("compiled").parent
    done = subprocess.run(
        [
            sys.executable,
            *interpreter_flags(),
            "-c",
            COMPILE,
            str(component.resolve()),
            str(root),
            *import_roots(),
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        reason = done.stderr.strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        raise PluginIOError(f"cannot compile {component} for this host: {reason[0]}")
    if done.stdout.strip():
        evict_compiled(Path(done.stdout.strip()))


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
        write_private(partial, json.dumps(durations).encode())
        partial.replace(path)
