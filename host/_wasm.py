"""The WASM backend: a plugin component run by wasmtime, sandboxed, behind ``Plugin``.

Sandbox: WASI with no preopened directory, no environment, no arguments and no
network (the world imports only WASI); a time limit per batch (epoch
interruption) and a memory cap (store limits). Guest stdout/stderr go to
per-instance files that are forwarded to the ``dataflare.guest`` logger after
every call. After a trap or a limit hit the instance is thrown away and the
next batch gets a fresh one.
"""

from __future__ import annotations

import logging
import math
import tempfile
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs
import wasmtime
from wasmtime import component as wc

from sdk import (
    BatchResult,
    ConfigurationError,
    LimitExceededError,
    LookBackResult,
    PluginError,
    PluginKind,
    ProcessingError,
    Record,
    SerializationError,
)
from sdk._wire import (
    decode_accumulator,
    decode_kept,
    decode_records,
    encode_accumulator,
    encode_request,
)

from ._engine import EPOCH_TICK_S, SharedEngine, shared_engine
from ._plugin import Plugin
from ._wit_path import WIT_INTERFACE

__all__ = ["Sandbox", "WasmPlugin"]

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


@attrs.frozen
class Sandbox:
    """Limits for a WASM plugin.

    ``time_limit_s`` bounds each batch (and ``init``); ``memory_limit_bytes``
    caps the guest's linear memory; ``instances`` > 1 splits large batches of
    record-wise kinds across that many instances run in parallel threads
    (wasmtime releases the GIL while the guest runs).
    """

    time_limit_s: float = 10.0
    memory_limit_bytes: int = 512 * 1024 * 1024
    instances: int = 1
    min_shard: int = 512
    """Smallest shard worth a thread: below 2x this a batch runs on one instance."""

    def __attrs_post_init__(self) -> None:
        if not self.time_limit_s > 0:
            raise ConfigurationError(f"time limit must be positive, got {self.time_limit_s}")
        if self.memory_limit_bytes < 32 * 1024 * 1024:
            raise ConfigurationError(
                f"memory limit {self.memory_limit_bytes} bytes is below the 32 MiB "
                "CPython itself needs inside the component"
            )
        if self.instances < 1:
            raise ConfigurationError(f"instances must be at least 1, got {self.instances}")


class _Trap(Exception):
    """The instance trapped (or hit a limit): it must not be used again."""

    def __init__(self, message: str, *, timed_out: bool) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class _Instance:
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
            raise _Trap(_trap_reason(text), timed_out="wasm trap: interrupt" in text) from exc
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


class WasmPlugin(Plugin):
    """A plugin compiled to a WASM component, run sandboxed by wasmtime."""

    def __init__(
        self,
        path: str | Path,
        params: Mapping[str, str] | None = None,
        sandbox: Sandbox | None = None,
    ) -> None:
        self.path = Path(path)
        self.sandbox = sandbox or Sandbox()
        self._shared = shared_engine()
        self._component = self._shared.load(self.path)
        self._params = dict(params or {})
        self._warm_up: list[Record] = []
        self._lock = threading.Lock()
        self._idle: list[_Instance] = []
        first = self._new_instance(init=False)
        info = self._describe(first)
        kind = PluginKind(info.kind.replace("-", "_"))
        self.info = info
        super().__init__(
            name=info.name,
            kind=kind,
            origin=str(self.path),
            initial=info.initial.encode("latin-1"),
        )
        self._init(first)
        self._idle.append(first)
        self._pool: ThreadPoolExecutor | None = None

    # -- instances ----------------------------------------------------------

    def _new_instance(self, *, init: bool = True) -> _Instance:
        instance = _Instance(self._shared, self._component, self.sandbox, str(self.path))
        if init:
            self._init(instance)
            if self._warm_up:
                # A replacement instance must know what look-back taught the one
                # it replaces (a non-aggregate keeps that in its guest context).
                try:
                    replay = self._call_look_back(instance, self._warm_up)
                except _Trap as trap:
                    instance.close()
                    raise PluginError(
                        f"plugin {self.name!r} ({self.path}): replaying look-back on a fresh "
                        f"instance trapped: {trap}"
                    ) from trap
                if replay.error is not None:
                    instance.close()
                    raise PluginError(
                        f"plugin {self.name!r} ({self.path}): replaying look-back on a fresh "
                        f"instance failed: {replay.error}"
                    )
        return instance

    def _describe(self, instance: _Instance) -> _PluginInfo:
        try:
            info = instance.call("describe")
        except _Trap as trap:
            instance.close()
            raise ConfigurationError(f"{self.path}: describe trapped: {trap}") from trap
        return _PluginInfo.from_wit(info)

    def _init(self, instance: _Instance) -> None:
        try:
            outcome = instance.call("init", list(self._params.items()))
        except _Trap as trap:
            instance.close()
            raise ConfigurationError(
                f"plugin {self.info.name!r} ({self.path}): init trapped: {trap}"
            ) from trap
        if outcome is not None:
            instance.close()
            raise _call_error(outcome, self.path)

    def _acquire(self) -> _Instance:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self._new_instance()

    def _release(self, instance: _Instance) -> None:
        with self._lock:
            self._idle.append(instance)

    # -- processing ---------------------------------------------------------

    def _run(self, records: Sequence[Record], accumulator: bytes | None) -> BatchResult:
        shards = self._shard_count(len(records))
        if shards == 1:
            return self._run_on_instance(records, accumulator)
        size = math.ceil(len(records) / shards)
        pieces = [records[start : start + size] for start in range(0, len(records), size)]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                self.sandbox.instances, thread_name_prefix="dataflare-wasm"
            )
        results = list(self._pool.map(lambda piece: self._run_on_instance(piece, None), pieces))
        return _merge(results, [len(p) for p in pieces])

    def _shard_count(self, count: int) -> int:
        if self.kind is PluginKind.AGGREGATE or self.sandbox.instances == 1:
            return 1
        return max(1, min(self.sandbox.instances, count // self.sandbox.min_shard))

    def _run_on_instance(self, records: Sequence[Record], accumulator: bytes | None) -> BatchResult:
        instance = self._acquire()
        try:
            result = self._call_kind(instance, records, accumulator)
        except _Trap as trap:
            instance.close()  # never reuse an instance that trapped
            return self._trap_result(records, accumulator, trap)
        except PluginError:
            instance.close()
            raise
        if result.error is not None:
            # After any failure the next batch gets a fresh instance: whatever the
            # plugin left half-done in its guest state is thrown away with it.
            instance.close()
        else:
            self._release(instance)
        if result.error is not None and result.error.error_type == "MemoryError":
            # The guest hit the memory cap and survived as a MemoryError.
            error = result.error
            limit = LimitExceededError(
                plugin=error.plugin,
                kind=error.kind,
                offset=error.offset,
                index=error.index,
                error_type="MemoryError",
                error_message=f"memory cap of {self.sandbox.memory_limit_bytes // (1 << 20)} MiB "
                f"reached ({error.error_message or 'allocation failed'})",
            )
            return attrs.evolve(result, error=limit)
        return result

    def _trap_result(
        self, records: Sequence[Record], accumulator: bytes | None, trap: _Trap
    ) -> BatchResult:
        first = records[0].offset if records else -1
        where = f"a batch of {len(records)} records starting at offset {first}"
        error: ProcessingError
        if trap.timed_out:
            error = self._batch_error(
                LimitExceededError,
                first,
                "TimeLimitExceeded",
                f"{where} ran past the {self.sandbox.time_limit_s:g} s time limit",
            )
        else:
            error = self._batch_error(
                ProcessingError,
                first,
                "Trap",
                f"the component trapped ({trap}) on {where}; see the dataflare.guest log",
            )
        acc = (
            accumulator
            if accumulator is not None
            else (self._initial if self.kind is PluginKind.AGGREGATE else None)
        )
        return BatchResult([], [], 0, error, acc)

    def _batch_error(
        self, cls: type[ProcessingError], offset: int, error_type: str, message: str
    ) -> ProcessingError:
        """An error about a whole batch (a trap or a limit): it names the first record."""
        return cls(
            plugin=self.name,
            kind=self.kind.value,
            offset=offset,
            index=0,
            error_type=error_type,
            error_message=message,
        )

    def _call_kind(
        self, instance: _Instance, records: Sequence[Record], accumulator: bytes | None
    ) -> BatchResult:
        batch = encode_request(records)
        kind = self.kind
        if kind is PluginKind.AGGREGATE:
            out = instance.call("aggregate", batch, encode_accumulator(accumulator))
        else:
            out = instance.call(kind.value.replace("_", "-"), batch)
        if not isinstance(out, wc.Record):
            raise _call_error(out, self.path)
        consumed = _field(out, "consumed", int)
        if not 0 <= consumed <= len(records):
            raise SerializationError(
                f"{self.path}: guest reported {consumed} consumed of {len(records)}"
            )
        error = self._processing_error(getattr(out, "error", None), records, consumed)
        if kind is PluginKind.FILTER:
            kept = decode_kept(_field(out, "kept", str), consumed)
            return BatchResult([records[i] for i in kept], kept, consumed, error)
        outputs, sources = decode_records(_field(out, "records", str), records, consumed)
        acc: bytes | None = None
        if kind is PluginKind.AGGREGATE:
            acc = decode_accumulator(_field(out, "accumulator", str))
        return BatchResult(outputs, sources, consumed, error, acc)

    def _processing_error(
        self, raw: Any, records: Sequence[Record], consumed: int
    ) -> ProcessingError | None:
        if raw is None:
            return None
        if consumed >= len(records):
            raise SerializationError(f"{self.path}: guest reported an error past the batch's end")
        # Name, kind and offset come from what the host knows, not from the guest.
        return ProcessingError(
            plugin=self.name,
            kind=self.kind.value,
            offset=records[consumed].offset,
            index=consumed,
            error_type=_field(raw, "error-type", str),
            error_message=_field(raw, "message", str),
        )

    @property
    def has_look_back(self) -> bool:
        """Whether the plugin defines a ``@look_back`` hook."""
        return self.info.has_look_back

    def _look_back(self, records: Sequence[Record]) -> LookBackResult:
        instance = self._acquire()
        try:
            result = self._call_look_back(instance, records)
        except _Trap as trap:
            instance.close()
            first = records[0].offset if records else -1
            error = self._batch_error(
                ProcessingError, first, "Trap", f"the component trapped in look_back ({trap})"
            )
            return LookBackResult(None, 0, error)
        except PluginError:
            instance.close()
            raise
        if result.error is not None:
            instance.close()
            return result
        self._warm_up = list(records)
        with self._lock:
            stale, self._idle = self._idle, [instance]
        for other in stale:  # they missed the warm-up: replaced on demand
            other.close()
        return result

    def _call_look_back(self, instance: _Instance, records: Sequence[Record]) -> LookBackResult:
        out = instance.call("look-back", encode_request(records))
        if not isinstance(out, wc.Record):
            raise _call_error(out, self.path)
        consumed = _field(out, "consumed", int)
        if not 0 <= consumed <= len(records):
            raise SerializationError(
                f"{self.path}: look-back reported {consumed} of {len(records)}"
            )
        raw_acc = getattr(out, "accumulator", None)
        accumulator = None if raw_acc is None else decode_accumulator(raw_acc)
        failure = self._processing_error(getattr(out, "error", None), records, consumed)
        return LookBackResult(accumulator, consumed, failure)

    def _close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        with self._lock:
            idle, self._idle = self._idle, []
        for instance in idle:
            instance.close()


@attrs.frozen
class _PluginInfo:
    name: str
    kind: str
    initial: str
    emit: str
    params: dict[str, str | None] | None
    sdk_version: str
    origin: str
    has_look_back: bool
    window: str | None

    @classmethod
    def from_wit(cls, raw: Any) -> _PluginInfo:
        params = None
        if raw.params is not None:
            params = {p.name: p.default for p in raw.params}
        return cls(
            name=raw.name,
            kind=_enum_name(raw.kind),
            initial=raw.initial,
            emit=_enum_name(raw.emit),
            params=params,
            sdk_version=getattr(raw, "sdk-version"),
            origin=raw.origin,
            has_look_back=bool(getattr(raw, "has-look-back")),
            window=raw.window,
        )


def _enum_name(value: Any) -> str:
    return str(value.value if hasattr(value, "value") else value)


def _field(raw: Any, name: str, kind: type) -> Any:
    value = getattr(raw, name, None)
    if not isinstance(value, kind):
        raise SerializationError(f"guest output field {name!r} is missing or not {kind.__name__}")
    return value


def _call_error(outcome: Any, path: Path) -> PluginError:
    tag = getattr(outcome, "tag", None)
    payload = str(getattr(outcome, "payload", ""))
    if tag == "configuration":
        return ConfigurationError(f"{path}: {payload}")
    if tag == "serialization":
        return SerializationError(f"{path}: {payload}")
    if tag == "unsupported":
        return ConfigurationError(f"{path}: {payload}")
    return PluginError(f"{path}: the component's shim failed: {payload}")


def _merge(results: list[BatchResult], sizes: list[int]) -> BatchResult:
    outputs: list[Record] = []
    sources: list[int] = []
    start = 0
    for result, size in zip(results, sizes, strict=True):
        outputs.extend(result.outputs)
        sources.extend(s + start for s in result.sources)
        if result.error is not None:
            error = result.error
            shifted = type(error)(**{**error.fields(), "index": error.index + start})  # type: ignore[arg-type]
            return BatchResult(outputs, sources, start + result.consumed, shifted)
        start += size
    return BatchResult(outputs, sources, start)
