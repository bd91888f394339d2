"""One instance of a plugin component inside a sandbox process: a Store, its limits, its exports.

Runs in the sandbox process: its side of
:class:`dataflare_host.wasm.sandbox.host._instance.Instance`. Like
:mod:`dataflare_host.wasm.sandbox.child._main`, it imports only wasmtime, the
standard library and the protocol: every sandbox process pays its imports before
a plugin's first record (``dataflare`` would be a large part of them), so what the SDK would give it
(the contract version, the error types) comes from the host in the request
and goes back as plain messages the host turns into its own exceptions.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import wasmtime
from wasmtime import component as wc

from dataflare_host.wasm.sandbox._charged_time import Stopwatch
from dataflare_host.wasm.sandbox.child._output import OUTPUT_CAP_BYTES, GuestOutput
from dataflare_host.wasm.sandbox.child._wasmtime_engine import ComponentError, WasmtimeEngine
from dataflare_host.wasm.sandbox.plugin_sources import GUEST_FOLDER
from dataflare_host.wasm.sandbox.protocol import GuestRecord, GuestVariant

__all__ = ["OUTPUT_CAP_BYTES", "GuestInstance", "GuestTrap", "plain"]

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


class GuestTrap(Exception):
    """The instance trapped or hit a limit: it must not be used again.

    ``timed_out`` says the time limit ended it. The host answers with its own
    :class:`dataflare_host.wasm.sandbox.host._trap.Trap`.
    """

    def __init__(self, message: str, *, timed_out: bool) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class GuestInstance:
    """One Store + instance of the component, with its export functions.

    ``interface`` is the WIT interface (``dataflare:plugin/plugin@VERSION``)
    the host speaks; a component exporting another version is refused before
    anything of it runs. What the guest prints goes to FIFOs in ``capture``, a
    folder made here (no directory of the host is visible to the guest), read as
    it is printed and capped; :meth:`drain_output` hands it over after every request.
    ``sources`` is the folder of a Python plugin's own files, which the guest sees
    read-only at :data:`GUEST_FOLDER` (None: the component holds its plugin). Raises
    :class:`ComponentError` for a component that is not a plugin of this
    contract. The time limit is the host's: it kills this process when a
    request overruns (a start function that never returns included).
    """

    def __init__(
        self,
        shared: WasmtimeEngine,
        component: wc.Component,
        memory_limit_bytes: int,
        time_limit_s: float,
        label: str,
        interface: str,
        capture: Path,
        sources: Path | None = None,
    ) -> None:
        self._label = label
        # A new folder (inside the process's private scratch folder, which the
        # host removes), not tempfile's: a sandbox process does not import tempfile.
        capture.mkdir(mode=0o700)
        self._capture = capture
        self._output = GuestOutput(capture)
        self.store = wasmtime.Store(shared.engine)
        wasi = wasmtime.WasiConfig()  # no env, no args; no folder but the plugin's own
        if sources is not None:
            # A Python plugin's own files (the component carries them beside the shared
            # runtime), read-only: the guest imports the plugin from there.
            wasi.preopen_dir(str(sources), GUEST_FOLDER, False)
        # FIFOs read as they fill, not stdout_custom: a custom output callback
        # crashed the interpreter at exit with wasmtime-py 50 (measured).
        wasi.stdout_file = str(self._output.stdout_path)
        wasi.stderr_file = str(self._output.stderr_path)
        self.store.set_wasi(wasi)
        self.store.set_limits(memory_size=memory_limit_bytes)
        _check_contract(component, shared, label, interface)
        # Charged time, not the wall clock: a busy machine's delay is not the plugin's.
        watch = Stopwatch(thread_self=True)
        try:
            instance = shared.linker.instantiate(self.store, component)
        except wasmtime.WasmtimeError as exc:
            raise ComponentError(
                f"{label} cannot be instantiated: {_first_line(exc)} (is it a DataFlare "
                "plugin component built with dataflare build?)"
            ) from exc
        elapsed = watch.read().charged_s
        if elapsed > time_limit_s:  # returned after the limit, before the host's kill
            raise GuestTrap(
                f"its start function returned after {elapsed:.2f} s, past the "
                f"{time_limit_s:g} s time limit",
                timed_out=True,
            )
        index = instance.get_export_index(self.store, interface)
        if index is None:
            raise ComponentError(
                f"{label} does not export {interface}: it is not a DataFlare plugin "
                "component of this version; rebuild it with dataflare build"
            )
        self.funcs: dict[str, wc.Func] = {}
        for name in _EXPORTS:
            export = instance.get_export_index(self.store, name, index)
            func = instance.get_func(self.store, export) if export is not None else None
            if func is None:
                raise ComponentError(f"{label} lacks the {name!r} export of {interface}")
            self.funcs[name] = func

    def call(self, name: str, args: tuple[Any, ...], time_limit_s: float) -> Any:
        """Call an export; raises :class:`GuestTrap` when the guest trapped or returned late.

        A call still running at the limit is the host's to end (it kills this
        process); one that returns after the limit, before the kill, is past
        the limit all the same.
        """
        func = self.funcs[name]
        watch = Stopwatch(thread_self=True)
        try:
            result = func(self.store, *args)
            func.post_return(self.store)
        except wasmtime.WasmtimeError as exc:
            raise GuestTrap(_trap_reason(str(exc)), timed_out=False) from exc
        except (TypeError, ValueError, OverflowError) as exc:
            # Arguments the component's types refuse (a component of another contract).
            raise GuestTrap(
                f"the {name!r} export refused its arguments: {exc}", timed_out=False
            ) from exc
        elapsed = watch.read().charged_s
        if elapsed > time_limit_s:
            raise GuestTrap(
                f"returned after {elapsed:.2f} s, past the {time_limit_s:g} s time limit",
                timed_out=True,
            )
        return plain(result)

    def drain_output(self) -> list[tuple[int, str]]:
        """What the guest printed since the last drain, as (log level, line), capped
        (see :mod:`dataflare_host.wasm.sandbox.child._output`)."""
        return self._output.drain()

    def close(self) -> None:
        """Release the capture FIFOs and their reader (safe to call twice)."""
        self._output.close()
        with contextlib.suppress(FileNotFoundError):
            self._capture.rmdir()


def _check_contract(
    component: wc.Component, shared: WasmtimeEngine, label: str, interface: str
) -> None:
    # Read from the component's type, before anything of it runs.
    prefix, _, wanted = interface.rpartition("@")
    exported = [
        name[len(prefix) + 1 :]
        for name in component.type.exports(shared.engine)
        if name.startswith(prefix + "@")
    ]
    if not exported:
        raise ComponentError(
            f"{label} does not export {interface}: it is not a DataFlare plugin component "
            "(build one with dataflare build, or against wit/plugin.wit)"
        )
    if exported[0] != wanted:
        raise ComponentError(
            f"{label} was built for plugin contract {exported[0]}; this host supports "
            f"{wanted} only: rebuild it (dataflare build, or against this "
            "host's wit/plugin.wit)"
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _trap_reason(text: str) -> str:
    # wasmtime's message is a wasm backtrace followed by "Caused by:"; the cause is what matters.
    if "Caused by:" in text:
        return text.rsplit("Caused by:", 1)[1].strip().splitlines()[0].strip()
    return _first_line(wasmtime.WasmtimeError(text))


def plain(value: Any) -> Any:
    """``value`` with wasmtime's records and variants made the protocol's, so
    the host unpickles an answer without importing wasmtime."""
    kind = type(value)
    if kind is wc.Record:
        return GuestRecord({name: plain(field) for name, field in vars(value).items()})
    if kind is wc.Variant:
        return GuestVariant(value.tag, plain(value.payload))
    if kind is list:
        return [plain(item) for item in value]
    if kind is tuple:
        return tuple(plain(item) for item in value)
    return value
