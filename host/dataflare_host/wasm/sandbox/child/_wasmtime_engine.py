"""The wasmtime engine of a sandbox process, and the compile cache it reads and writes.

Runs in the sandbox process. Compiling a component takes seconds (CPython is
inside it); a compiled artifact loads far faster. Artifacts are cached on disk,
keyed by the hash of the component's code (a Python plugin's sources
section excluded, see :mod:`..plugin_sources`), the wasmtime version and the
engine configuration, because an artifact is only valid for the exact engine that
produced it. The host names the cache folder in its request and keeps the
folder's size down itself (it evicts after a compile), so this module needs
nothing of the host.

This module is on the path to a plugin's first record: it imports only
wasmtime, the standard library, the protocol and the ownership check (no ``dataflare``, no attrs,
no ``importlib.metadata``), and a cached component costs a ``stat``, a small
memo read and a mapped deserialize, not a read and hash of the whole component.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import zlib
from pathlib import Path
from typing import NamedTuple

import wasmtime
from wasmtime import component as wc

from dataflare_host._ownership import FIX, untrusted, write_private
from dataflare_host.wasm.sandbox.plugin_sources import (
    PluginSources,
    SourcesError,
    read_sources,
    split_sources,
)
from dataflare_host.wasm.sandbox.protocol import RACY_WINDOW_NS

__all__ = ["ComponentError", "Loaded", "WasmtimeEngine", "compile_key", "wasmtime_engine"]

_ENGINE_CONFIG = "epoch_interruption=0;cranelift_opt=speed"  # must match WasmtimeEngine's Config


class ComponentError(Exception):
    """A component file that cannot be read or is not a valid component; one line."""


_wasmtime_version: str | None = None


def wasmtime_version() -> str:
    """The installed wasmtime-py's version: artifacts are only valid for it.

    Read from its ``.dist-info`` folder beside the package (a directory
    listing), falling back to :mod:`importlib.metadata`, whose import is a
    large part of a sandbox process's start.
    """
    global _wasmtime_version
    if _wasmtime_version is None:
        package = Path(wasmtime.__file__).parent
        found = [
            name[len("wasmtime-") : -len(".dist-info")]
            for name in os.listdir(package.parent)
            if name.startswith("wasmtime-") and name.endswith(".dist-info")
        ]
        if len(found) == 1:
            _wasmtime_version = found[0]
        else:  # another layout (an egg, a zip, two stale dist-infos): ask the metadata
            from importlib.metadata import version

            _wasmtime_version = version("wasmtime")
    return _wasmtime_version


class Loaded(NamedTuple):
    """A component :meth:`WasmtimeEngine.load` returns, and the artifact it compiled, if any.

    ``compiled`` is the artifact written by this load (None when the component
    came from memory or the disk cache): the host evicts old artifacts then.
    """

    component: wc.Component
    compiled: Path | None
    sources: PluginSources | None
    """A Python plugin's files, which the guest reads from a folder (None: all inside)."""


class WasmtimeEngine:
    """wasmtime's Engine and its WASI linker, shared by the sandbox process's stores.

    No epoch interruption: the time limit is the host's, which kills the
    sandbox process when a call overruns (a CPU loop and a blocking WASI call
    alike). Epoch checks compiled into every loop and call slow guest code
    down measurably, for a limit the kill enforces anyway; all they saved was
    a process start on each time-out, which is rare.
    """

    def __init__(self) -> None:
        config = wasmtime.Config()
        config.cranelift_opt_level = "speed"
        self.engine = wasmtime.Engine(config)
        self.linker = wc.Linker(self.engine)
        self.linker.add_wasip2()
        self._components: dict[str, wc.Component] = {}
        self._lock = threading.Lock()

    def load(self, path: Path, cache_root: Path) -> Loaded:
        """The compiled component for the file at ``path``, from memory, disk cache or JIT.

        ``cache_root`` (the host's, named in its request) holds ``compiled/``
        (the artifacts) and ``keys/`` (:func:`_artifact_key`'s memos). Raises
        :class:`ComponentError` when the file cannot be read or is not a
        component.
        """
        key, data = _artifact_key(path, cache_root / "keys")
        sources = _sources(path, data)
        compiled: Path | None = None
        with self._lock:
            component = self._components.get(key)
            if component is None:
                component = self._deserialize(cache_root / "compiled" / f"{key}.cwasm")
            if component is None:
                if data is None:
                    # The key came from the memo and its artifact is gone. The bytes
                    # compiled are the bytes hashed here: had the file changed since
                    # its stat, its old key must not name the new code.
                    data = _read(path)
                    key = _key_of(_code(data, path))
                artifact = cache_root / "compiled" / f"{key}.cwasm"
                component, written = self._compile(path, _code(data, path), artifact)
                compiled = artifact if written else None
            self._components[key] = component
            return Loaded(component, compiled, sources)

    def _deserialize(self, artifact: Path) -> wc.Component | None:
        # A compiled artifact is native code: mapped only when this user wrote it
        # and no one else can have (the folder was checked by the host).
        _refuse_untrusted(artifact)
        if not artifact.is_file():
            return None
        try:
            # Mapped, not read: a fraction of the time of a deserialize from bytes.
            component = wc.Component.deserialize_file(self.engine, str(artifact))
        except wasmtime.WasmtimeError:
            artifact.unlink(missing_ok=True)  # stale or corrupt: compile again
            return None
        # Recently used: the last to be evicted. A read-only cache still works;
        # its order of use is just not kept.
        with contextlib.suppress(OSError):
            os.utime(artifact)
        return component

    def _compile(
        self, path: Path, data: bytes | memoryview, artifact: Path
    ) -> tuple[wc.Component, bool]:
        """The component compiled from ``data``, and whether its artifact was written."""
        try:
            component = wc.Component(self.engine, bytes(data))
        except wasmtime.WasmtimeError as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "unknown error"
            raise ComponentError(
                f"{path} is not a valid WebAssembly component ({first_line}); "
                "build one with: dataflare build PLUGIN.py -o PLUGIN.wasm"
            ) from exc
        try:
            artifact.parent.mkdir(parents=True, exist_ok=True)
            partial = artifact.with_name(f".{artifact.name}.{os.getpid()}.partial")
            write_private(partial, component.serialize())
            partial.replace(artifact)
        except OSError:
            return component, False  # an unwritable cache only costs the next run a compile
        return component, True


def _refuse_untrusted(path: Path) -> None:
    """ComponentError naming ``path`` when it is a link, not a regular file, another user's,
    or writable by its group or anyone: such a cache file is code another user could plant.

    The same check, worded the same, as the host's (``dataflare_host._ownership`` is
    standard library only, so a sandbox process may import it).
    """
    problem = untrusted(path, folder=False)
    if problem is not None:
        raise ComponentError(f"cached file {path} {problem}; refusing to use it: {FIX}")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ComponentError(f"cannot read WASM component {path}: {exc.strerror}") from exc


def _code(data: bytes, path: Path) -> memoryview:
    """The component's bytes without a Python plugin's sources: what is compiled."""
    return memoryview(data)[: _split(path, data)[0]]


def _sources(path: Path, data: bytes | None) -> PluginSources | None:
    """A Python plugin's files: from ``data`` when the file was read, else its tail."""
    return _split(path, data)[1]


def _split(path: Path, data: bytes | None) -> tuple[int, PluginSources | None]:
    try:
        return read_sources(path) if data is None else split_sources(data)
    except SourcesError as exc:
        raise ComponentError(f"{path} is not a valid DataFlare component: {exc}") from None
    except OSError as exc:
        raise ComponentError(f"cannot read WASM component {path}: {exc.strerror}") from exc


def compile_key(path: Path) -> str:
    """The compile-cache key of the component at ``path``, read and hashed in full."""
    return _key_of(_code(_read(path), path))


def _key_of(data: bytes | memoryview) -> str:
    """The compile-cache key of a component's bytes."""
    import hashlib  # loads OpenSSL: only for a file the memo does not know

    digest = hashlib.sha256(data).hexdigest()
    return hashlib.sha256(
        f"{digest}|wasmtime={wasmtime_version()}|{_ENGINE_CONFIG}".encode()
    ).hexdigest()[:32]


def _identity(path: Path) -> tuple[str, os.stat_result]:
    """What names this file's content without reading it, and its ``stat``.

    ctime, unlike mtime, cannot be set back by a user: any write, truncate,
    chmod or utime moves it. Inode and device tell a file swapped in by rename.
    The wasmtime version and engine settings are part of it because the memo
    stores the artifact key, which depends on them.
    """
    try:
        info = path.stat()
    except OSError as exc:
        raise ComponentError(f"cannot read WASM component {path}: {exc.strerror}") from exc
    fields = (
        path.resolve(),
        info.st_dev,
        info.st_ino,
        info.st_size,
        info.st_mtime_ns,
        info.st_ctime_ns,
        wasmtime_version(),
        _ENGINE_CONFIG,
    )
    return "\0".join(map(str, fields)), info


def _artifact_key(path: Path, folder: Path) -> tuple[str, bytes | None]:
    """The compile-cache key of the file's content, and the content when it had to be read.

    The key is a hash of the content's SHA-256, the wasmtime version and the
    engine settings. A file whose identity (:func:`_identity`) was seen before
    has its key memoised in ``folder``, so a cached start neither reads and
    hashes the whole component nor loads OpenSSL for hashlib. Only a file
    whose last change is older than :data:`RACY_WINDOW_NS` is memoised: a later
    change moves its ctime, so a changed file never maps to the key (and the
    artifact) of its old content. A memo holds its identity in full and is
    used only on an exact match: its name is a checksum, a collision a miss.
    The folder sits beside ``compiled/``, not in it: a memo is a fact about a
    file, not an artifact, and must not count against the artifacts' size cap.
    """
    identity, before = _identity(path)
    memo = folder / f"{zlib.crc32(identity.encode()):08x}.key"
    _refuse_untrusted(memo)  # a planted memo would name another plugin's artifact
    with contextlib.suppress(OSError, UnicodeDecodeError):
        remembered, _, key = memo.read_text(encoding="utf-8").rpartition("\n")
        if remembered == identity and len(key) == 32:
            return key, None
    data = _read(path)
    key = _key_of(_code(data, path))
    settled = time.time_ns() - before.st_ctime_ns > RACY_WINDOW_NS
    if settled and _identity(path)[0] == identity:  # and it did not change while read
        with contextlib.suppress(OSError):
            folder.mkdir(parents=True, exist_ok=True)
            partial = memo.with_name(f".{memo.name}.{os.getpid()}.partial")
            write_private(partial, f"{identity}\n{key}".encode())
            partial.replace(memo)
            _prune(folder)
    return key, data


_MAX_MEMOS = 512


def _prune(folder: Path) -> None:
    """Keep the memo folder bounded: past :data:`_MAX_MEMOS`, the older half goes.

    Runs only when a memo was written (a component seen for the first time),
    so the listing is no cost of a cached start. A pruned memo only costs a
    hash on that file's next load.
    """
    with os.scandir(folder) as listing:
        memos = [entry for entry in listing if entry.name.endswith(".key")]
    if len(memos) <= _MAX_MEMOS:
        return
    dated = []
    for entry in memos:
        with contextlib.suppress(OSError):
            dated.append((entry.stat().st_mtime_ns, entry.path))
    dated.sort()
    for _, path in dated[: len(dated) - _MAX_MEMOS // 2]:
        with contextlib.suppress(OSError):
            os.unlink(path)


_shared: WasmtimeEngine | None = None
_shared_lock = threading.Lock()


def wasmtime_engine() -> WasmtimeEngine:
    """The sandbox process's wasmtime engine (created on first use)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = WasmtimeEngine()
        return _shared
