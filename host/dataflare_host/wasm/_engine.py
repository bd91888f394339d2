"""One wasmtime Engine per sandbox configuration, its epoch ticker, and the compile cache.

Compiling a component takes seconds (CPython is inside it); a compiled artifact
loads in milliseconds. Artifacts are cached on disk, keyed by the component's
hash, the wasmtime version and the engine configuration, because an artifact
is only valid for the exact engine that produced it.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import threading
from importlib.metadata import version
from pathlib import Path

import wasmtime
from wasmtime import component as wc

from dataflare import ConfigurationError
from dataflare_host._cache import cache_max_bytes, cache_root, evict, touch

__all__ = ["EPOCH_TICK_S", "SharedEngine", "compiled_dir", "shared_engine"]

log = logging.getLogger("dataflare.wasm")

EPOCH_TICK_S = 0.01
"""How often the engine's epoch advances: the resolution of time limits."""

_WASMTIME_VERSION = version("wasmtime")  # the installed one: artifacts are only valid for it
_ENGINE_CONFIG = "epoch_interruption=1;cranelift_opt=speed"  # must match SharedEngine's Config


def compiled_dir() -> Path:
    """Where compiled components are cached (``compiled/`` under the cache root)."""
    return cache_root() / "compiled"


class SharedEngine:
    """A wasmtime Engine with epoch interruption and a ticker thread.

    One ticker for every store: each store sets its own deadline as a number of
    ticks, so a limit on one plugin never interrupts another.
    """

    def __init__(self) -> None:
        config = wasmtime.Config()
        # Kept on although the host also kills a sandbox process that overruns:
        # the epoch stops a CPU loop at the limit itself and keeps the process
        # (measured: off is ~20% faster guest code, but every overrun then
        # costs the kill grace and a new process, >2x longer per time-out).
        config.epoch_interruption = True
        config.cranelift_opt_level = "speed"
        self.engine = wasmtime.Engine(config)
        self.linker = wc.Linker(self.engine)
        self.linker.add_wasip2()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="dataflare-epoch", daemon=True)
        self._ticker.start()
        self._components: dict[str, wc.Component] = {}
        self._lock = threading.Lock()
        atexit.register(self.stop)

    def _tick(self) -> None:
        while not self._stop.wait(EPOCH_TICK_S):
            self.engine.increment_epoch()

    def stop(self) -> None:
        """Stop the ticker (at interpreter exit)."""
        self._stop.set()
        if self._ticker.is_alive():
            self._ticker.join(timeout=1)

    def load(self, path: Path) -> wc.Component:
        """The compiled component for the file at ``path``, from memory, disk cache or JIT."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"cannot read WASM component {path}: {exc.strerror}") from exc
        digest = hashlib.sha256(data).hexdigest()
        key = hashlib.sha256(
            f"{digest}|wasmtime={_WASMTIME_VERSION}|{_ENGINE_CONFIG}".encode()
        ).hexdigest()[:32]
        with self._lock:
            cached = self._components.get(key)
            if cached is not None:
                return cached
            component = self._load_uncached(path, data, key)
            self._components[key] = component
            return component

    def _load_uncached(self, path: Path, data: bytes, key: str) -> wc.Component:
        artifact = compiled_dir() / f"{key}.cwasm"
        if artifact.is_file():
            try:
                component = wc.Component.deserialize_file(self.engine, str(artifact))
            except wasmtime.WasmtimeError:
                artifact.unlink(missing_ok=True)  # stale or corrupt: compile again
            else:
                touch(artifact)  # recently used: the last to be evicted
                return component
        try:
            component = wc.Component(self.engine, data)
        except wasmtime.WasmtimeError as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "unknown error"
            raise ConfigurationError(
                f"{path} is not a valid WebAssembly component ({first_line}); "
                "build one with: dataflare build PLUGIN.py -o PLUGIN.wasm"
            ) from exc
        try:
            artifact.parent.mkdir(parents=True, exist_ok=True)
            partial = artifact.with_name(f".{artifact.name}.{os.getpid()}.partial")
            partial.write_bytes(component.serialize())
            partial.replace(artifact)
        except OSError:
            return component  # an unwritable cache only costs the next run a compile
        try:
            evict(compiled_dir(), cache_max_bytes(), keep=artifact)
        except ConfigurationError as exc:  # a bad cap must not fail the load it follows
            log.warning("compile cache not evicted: %s", exc)
        return component


_shared: SharedEngine | None = None
_shared_lock = threading.Lock()


def shared_engine() -> SharedEngine:
    """The process's engine (created on first use)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SharedEngine()
        return _shared
