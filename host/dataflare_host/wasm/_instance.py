"""One sandboxed instance of a plugin component: a Store, its limits, its exports."""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path
from typing import Any

import wasmtime
from dataflare import ConfigurationError
from wasmtime import component as wc

from dataflare_host.wasm._engine import EPOCH_TICK_S, SharedEngine
from dataflare_host.wasm._sandbox import Sandbox
from dataflare_host.wasm._wit import WIT_INTERFACE

__all__ = ["Instance", "Trap"]

log = logging.getLogger("dataflare.guest")

_EXPORTS = (
    "describe",
    "init",
    "filter",
    "map",
    "filter-map",
    "array-map",
    "aggregate",
    "look-back",
)
_NO_DEADLINE = 1 << 62


class Trap(Exception):
    """The instance trapped (or hit a limit): it must not be used again."""

    def __init__(self, message: str, *, timed_out: bool) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class Instance:
    """One Store + instance of the component, with its export functions."""

    def __init__(
        self, shared: SharedEngine, component: wc.Component, sandbox: Sandbox, label: str
    ) -> None:
        self._sandbox = sandbox
        self._label = label
        self._logdir = tempfile.TemporaryDirectory(prefix="dataflare-guest-")
        self._out = Path(self._logdir.name) / "stdout"
        self._err = Path(self._logdir.name) / "stderr"
        self._positions = {self._out: 0, self._err: 0}
        self.store = wasmtime.Store(shared.engine)
        wasi = wasmtime.WasiConfig()  # nothing added: no dirs, no env, no args
        # Files, not stdout_custom: a custom output callback crashed the
        # interpreter at exit with wasmtime-py 50 (measured).
        wasi.stdout_file = str(self._out)
        wasi.stderr_file = str(self._err)
        self.store.set_wasi(wasi)
        self.store.set_limits(memory_size=sandbox.memory_limit_bytes)
        self.store.set_epoch_deadline(_NO_DEADLINE)
        try:
            instance = shared.linker.instantiate(self.store, component)
        except wasmtime.WasmtimeError as exc:
            raise ConfigurationError(
                f"{label} cannot be instantiated: {_first_line(exc)} (is it a DataFlare "
                "plugin component built with dataflare build?)"
            ) from exc
        interface = instance.get_export_index(self.store, WIT_INTERFACE)
        if interface is None:
            raise ConfigurationError(
                f"{label} does not export {WIT_INTERFACE}: it is not a DataFlare plugin "
                "component of this version; rebuild it with dataflare build"
            )
        self.funcs: dict[str, wc.Func] = {}
        for name in _EXPORTS:
            index = instance.get_export_index(self.store, name, interface)
            func = instance.get_func(self.store, index) if index is not None else None
            if func is None:
                raise ConfigurationError(f"{label} lacks the {name!r} export of {WIT_INTERFACE}")
            self.funcs[name] = func

    def call(self, name: str, *args: Any) -> Any:
        func = self.funcs[name]
        ticks = max(1, math.ceil(self._sandbox.time_limit_s / EPOCH_TICK_S))
        self.store.set_epoch_deadline(ticks)
        try:
            result = func(self.store, *args)
            func.post_return(self.store)
        except wasmtime.WasmtimeError as exc:
            text = str(exc)
            raise Trap(_trap_reason(text), timed_out="wasm trap: interrupt" in text) from exc
        finally:
            self.store.set_epoch_deadline(_NO_DEADLINE)
            self.forward_output()
        return result

    def forward_output(self) -> None:
        """Send what the guest printed since the last call to the log."""
        for path, level in ((self._out, logging.INFO), (self._err, logging.WARNING)):
            try:
                with path.open("rb") as handle:
                    handle.seek(self._positions[path])
                    data = handle.read()
                    self._positions[path] = handle.tell()
            except FileNotFoundError:
                continue
            for line in data.decode("utf-8", errors="replace").splitlines():
                log.log(level, "%s: %s", self._label, line)

    def close(self) -> None:
        self.forward_output()
        self._logdir.cleanup()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _trap_reason(text: str) -> str:
    # wasmtime's message is a wasm backtrace followed by "Caused by:"; the cause is what matters.
    if "Caused by:" in text:
        return text.rsplit("Caused by:", 1)[1].strip().splitlines()[0].strip()
    return _first_line(wasmtime.WasmtimeError(text))


