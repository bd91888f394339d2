"""The one build cache: components by the inputs of their build.

``dataflare build``, pipelines (``plugin_source: wasm`` with a ``.py``),
``dataflare test --wasm`` and the test kit all get their component here, so a
plugin is built once per content. The key is a hash of everything that goes
into the component: the plugin's files (a file, or a package folder's modules),
the files of the dependencies bundled with it, the generated app module, the
guest SDK's sources, the WIT contract and the componentize-py version.
Content, never file times: a touched but unchanged file is not rebuilt, and a
changed one always is (componentize-py output is not reproducible, so rebuilding
the same inputs would also force a new compile).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

from filelock import FileLock

from dataflare import ConfigurationError
from dataflare_host._cache import trusted_file, trusted_folder
from dataflare_host._ownership import write_private
from dataflare_host._waiting import waiting
from dataflare_host.wasm.build._componentize import (
    app_module_source,
    build_component,
    build_inputs,
    build_runtime,
    bundled_runtime,
    guest_sources,
    runtime_key,
)
from dataflare_host.wasm.build._precompile import (
    compile_for_this_host,
    last_duration,
    remember_duration,
)
from dataflare_host.wasm.build._shared_runtime import assemble
from dataflare_host.wasm.build._wit import wit_dir

__all__ = ["PHASES", "RUNTIME_PHASES", "build_key", "component_for", "shared_runtime"]

PHASES = ("componentize", "compile for this host")
"""The named phases of a whole build, in order, as its progress lines name them."""

RUNTIME_PHASES = ("componentize the shared runtime", "compile the shared runtime")
"""The phases of the shared runtime's build, once per host and contract."""

ASSEMBLE = "runtime + plugin files"
"""The phase of a plugin's build on the shared runtime: a copy and a load check."""

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def build_key(source: Path) -> str:
    """The hash of every input of ``source``'s build (its cache key): the plugin's
    files, the bundled dependencies' files, the generated app module, the SDK,
    the WIT contract and the componentize-py version."""
    digest = hashlib.sha256(f"componentize-py={version('componentize-py')}".encode())
    if not source.exists():
        raise ConfigurationError(f"plugin file {source} does not exist")
    for path, relative in build_inputs(source.resolve()):
        try:
            content = path.read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"plugin file {path} cannot be read: {exc.strerror}") from exc
        # Name and length first: moving bytes between files changes the key.
        digest.update(f"{relative}\0{len(content)}\0".encode())
        digest.update(content)
    digest.update(app_module_source(source.resolve().name).encode())
    digest.update((wit_dir() / "plugin.wit").read_bytes())
    for module in guest_sources():
        digest.update(module.name.encode())
        digest.update(module.read_bytes())
    return digest.hexdigest()[:24]


def component_for(source: str | os.PathLike[str], *, compile_now: bool = True) -> Path:
    """The component built from the plugin file or folder ``source``, building it on a miss.

    A build has two phases (:data:`PHASES`): componentize-py makes the
    component, then it is compiled for this host into the compile cache, so
    its first run maps it instead of compiling (``compile_now=False`` leaves
    that to the first run). Each phase's progress says how long it took last
    time.

    >>> component_for("guest_examples/uppercase_map.py")  # doctest: +SKIP
    PosixPath('/root/.cache/dataflare/builds/uppercase_map-3f2a....wasm')
    """
    path = Path(source)
    key = build_key(path)
    # Checked before use: whoever can write builds/ decides which plugin runs.
    target = trusted_folder("builds") / f"{path.stem}-{key}.wasm"
    return _once(target, key, path.stem, lambda: _build(path, target, compile_now=compile_now))


def shared_runtime() -> Path:
    """The shared runtime component, built and compiled for this host on its first use.

    Every Python plugin's component is these bytes plus the plugin's own files
    (:mod:`._shared_runtime`); it is built once per host and contract.
    """
    key = runtime_key()
    target = trusted_folder("builds") / f"dataflare-runtime-{key}.wasm"
    return _once(target, key, "dataflare-runtime", lambda: _build_runtime(target))


def _once(target: Path, key: str, name: str, build: Callable[[], None]) -> Path:
    """``target``, after ``build`` made it unless it was already there."""
    with _locks_guard:
        lock = _locks.setdefault(key, threading.Lock())
    # Two threads, or two processes (pipelines, test workers), asking for one
    # build wait for one componentize-py run instead of each running their own.
    with lock:
        if trusted_file(target):
            return target
        # One lock per name, outside builds/ so the cache's size and eviction
        # only ever see components.
        locks = trusted_folder("locks")
        with FileLock(locks / f"{name}.lock"):
            if not trusted_file(target):
                build()
    return target


@contextmanager
def _published(target: Path) -> Iterator[Path]:
    """A partial file beside ``target`` to build into, renamed to ``target`` if the block
    succeeds and removed either way: whoever finds ``target`` finds it whole."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.built")
    try:
        yield partial
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)


def _build(path: Path, target: Path, *, compile_now: bool) -> None:
    componentize, compile_phase = PHASES
    steps = 2 if compile_now else 1
    # Published only once compiled: whoever finds the component finds it ready.
    with _published(target) as partial:
        runtime = shared_runtime()
        with _phase(f"building {path.name}: {ASSEMBLE}", ASSEMBLE):
            assembled = assemble(runtime, path, partial)
        if not assembled:
            with _phase(f"building {path.name}: {componentize} (1 of {steps})", componentize):
                build_component(path, partial)
            if compile_now:
                with _phase(f"building {path.name}: {compile_phase} (2 of 2)", compile_phase):
                    compile_for_this_host(partial)


def _build_runtime(target: Path) -> None:
    componentize, compile_phase = RUNTIME_PHASES
    bundled = bundled_runtime()
    with _published(target) as partial:
        if bundled.is_file():
            # The install came with it (built with the wheel): only the compile is left.
            write_private(partial, bundled.read_bytes())
            steps = "(1 of 1)"
        else:
            with _phase(f"{componentize}, once per host (1 of 2)", componentize):
                build_runtime(partial)
            steps = "(2 of 2)"
        with _phase(f"{compile_phase} for this host {steps}", compile_phase):
            compile_for_this_host(partial)


@contextmanager
def _phase(what: str, phase: str) -> Iterator[None]:
    """A build phase's progress lines, with how long it took last time; then its duration
    is remembered for the next build (only when it succeeded)."""
    started = time.monotonic()
    with waiting(what, last_duration(phase)):
        yield
    remember_duration(phase, time.monotonic() - started)
