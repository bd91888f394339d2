"""One instance of a plugin component inside a sandbox process: a Store, its limits, its exports."""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import wasmtime
from wasmtime import component as wc

from dataflare import ConfigurationError
from dataflare.runtime import CONTRACT_VERSION
from dataflare_host.wasm._engine import EPOCH_TICK_S, SharedEngine
from dataflare_host.wasm._wit import WIT_INTERFACE, contract_version_of

__all__ = ["OUTPUT_CAP_BYTES", "GuestInstance", "Trap"]

_EXPORTS = (
    "describe",
    "init",
    "filter",
    "map",
    "filter-map",
    "array-map",
    "aggregate",
    "look-back",
    "snapshot-state",
    "restore-state",
)
_NO_DEADLINE = 1 << 62

OUTPUT_CAP_BYTES = 64 * 1024
"""Most guest output kept per stream and request; the rest is dropped with a marker."""


class Trap(Exception):
    """The instance trapped, hit a limit or had to be killed: it must not be used again.

    ``timed_out`` says the time limit ended it; ``memory`` that the memory cap did.
    """

    def __init__(self, message: str, *, timed_out: bool, memory: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out
        self.memory = memory


class GuestInstance:
    """One Store + instance of the component, with its export functions.

    Lives in a sandbox process (:mod:`dataflare_host.wasm._worker`); the host
    talks to it through :class:`dataflare_host.wasm._sandbox_process.Instance`.
    What the guest prints goes to files (no directory of the host is visible
    to it) that :meth:`drain_output` reads after every request, capped.
    """

    def __init__(
        self,
        shared: SharedEngine,
        component: wc.Component,
        memory_limit_bytes: int,
        time_limit_s: float,
        label: str,
    ) -> None:
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
        self.store.set_limits(memory_size=memory_limit_bytes)
        _check_contract(component, shared, label)
        # A start function runs during instantiation: it gets the time limit too.
        self.store.set_epoch_deadline(_ticks(time_limit_s))
        try:
            instance = shared.linker.instantiate(self.store, component)
        except wasmtime.WasmtimeError as exc:
            text = str(exc)
            if "wasm trap: interrupt" in text:
                raise Trap(
                    f"its start function ran past the {time_limit_s:g} s time limit",
                    timed_out=True,
                ) from exc
            raise ConfigurationError(
                f"{label} cannot be instantiated: {_first_line(exc)} (is it a DataFlare "
                "plugin component built with dataflare build?)"
            ) from exc
        finally:
            self.store.set_epoch_deadline(_NO_DEADLINE)
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

    def call(self, name: str, args: tuple[Any, ...], time_limit_s: float) -> Any:
        """Call an export under the time limit; raises :class:`Trap` when the guest trapped."""
        func = self.funcs[name]
        self.store.set_epoch_deadline(_ticks(time_limit_s))
        started = time.monotonic()
        try:
            result = func(self.store, *args)
            func.post_return(self.store)
            elapsed = time.monotonic() - started
            if elapsed > time_limit_s + EPOCH_TICK_S:
                # A blocking WASI call the epoch cannot interrupt returned after the
                # limit (but before the host killed us): still past the limit.
                raise Trap(
                    f"returned after {elapsed:.2f} s, past the {time_limit_s:g} s time limit",
                    timed_out=True,
                )
        except wasmtime.WasmtimeError as exc:
            text = str(exc)
            if "wasm trap: interrupt" in text:
                raise Trap(f"ran past the {time_limit_s:g} s time limit", timed_out=True) from exc
            raise Trap(_trap_reason(text), timed_out=False) from exc
        except (TypeError, ValueError, OverflowError) as exc:
            # Arguments the component's types refuse (a component of another contract).
            raise Trap(f"the {name!r} export refused its arguments: {exc}", timed_out=False) from (
                exc
            )
        finally:
            self.store.set_epoch_deadline(_NO_DEADLINE)
        return result

    def drain_output(self) -> list[tuple[int, str]]:
        """What the guest printed since the last drain, as (log level, line), capped.

        At most :data:`OUTPUT_CAP_BYTES` per stream per request are kept; the rest
        is dropped with a marker line saying how much. The capture file is then
        truncated, so a guest printing gigabytes costs neither memory nor disk.
        """
        lines: list[tuple[int, str]] = []
        for path, level in ((self._out, logging.INFO), (self._err, logging.WARNING)):
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            position = self._positions[path]
            if size < position:  # the writer appends at the (truncated) end
                position = 0
            if size == position:
                continue
            with path.open("rb") as handle:
                handle.seek(position)
                data = handle.read(OUTPUT_CAP_BYTES)
            dropped = size - position - len(data)
            # Truncating frees the disk; wasmtime keeps writing at its own offset
            # (a sparse file), which the next drain starts from.
            os.truncate(path, 0)
            self._positions[path] = size
            lines.extend(
                (level, line) for line in data.decode("utf-8", errors="replace").splitlines()
            )
            if dropped > 0:
                stream = "stdout" if path == self._out else "stderr"
                lines.append(
                    (logging.WARNING, f"[{dropped:,} more bytes of guest {stream} dropped]")
                )
        return lines

    def close(self) -> None:
        """Release the store and the capture files."""
        self._logdir.cleanup()


def _check_contract(component: wc.Component, shared: SharedEngine, label: str) -> None:
    # Read from the component's type, before anything of it runs.
    version = contract_version_of(component.type.exports(shared.engine))
    if version is None:
        raise ConfigurationError(
            f"{label} does not export {WIT_INTERFACE}: it is not a DataFlare plugin component "
            "(build one with dataflare build, or against wit/plugin.wit)"
        )
    if version != CONTRACT_VERSION:
        raise ConfigurationError(
            f"{label} was built for plugin contract {version}; this host supports "
            f"{CONTRACT_VERSION} only: rebuild it (dataflare build, or against this "
            "host's wit/plugin.wit)"
        )


def _ticks(time_limit_s: float) -> int:
    return max(1, math.ceil(time_limit_s / EPOCH_TICK_S))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _trap_reason(text: str) -> str:
    # wasmtime's message is a wasm backtrace followed by "Caused by:"; the cause is what matters.
    if "Caused by:" in text:
        return text.rsplit("Caused by:", 1)[1].strip().splitlines()[0].strip()
    return _first_line(wasmtime.WasmtimeError(text))


