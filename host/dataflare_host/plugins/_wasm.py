"""The WASM backend: a plugin component run by wasmtime, sandboxed, behind ``Plugin``.

Sandbox: each instance lives in a sandbox process the host kills when a call
outlives its time limit (so blocking WASI calls are bounded too), with WASI
giving no preopened directory, no environment, no arguments and no network
(the world imports only WASI); a time limit per call (the kill) and a memory
cap (store limits). Guest stdout/stderr are forwarded,
capped, to the ``dataflare.guest`` logger after every call.

After a trap or a limit hit the instance is thrown away (its memory is
suspect) and the next batch gets a fresh one; a Python exception the guest
caught and reported keeps the instance, exactly as a native plugin keeps its
state after a failed record. A plugin that declares state runs on one
instance, and losing it (a trap, a limit) loses that state: the batch then
fails as a whole with a :class:`PluginError`, whatever ``on_error`` says, so a
pipeline stops and resumes from its last checkpoint, state included.
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs

from dataflare import (
    ConfigurationError,
    LimitExceededError,
    PluginError,
    PluginKind,
    ProcessingError,
    Record,
    SerializationError,
)
from dataflare.runtime import (
    BatchResult,
    LookBackResult,
    decode_accumulator,
    decode_kept,
    decode_records,
    encode_accumulator,
    encode_request,
    resolve_params,
)
from dataflare.runtime._error_details import preview
from dataflare.runtime._plugin_files import split_message
from dataflare_host.plugins._interface import Begun, Plugin
from dataflare_host.plugins._wasm_batches import _Ahead, _merge, _timed_out
from dataflare_host.wasm.sandbox.host._instance import (
    CALLS_IN_FLIGHT,
    Abandoned,
    Call,
    Instance,
    PreparedCall,
    prepare_call,
)
from dataflare_host.wasm.sandbox.host._limits import SandboxLimits
from dataflare_host.wasm.sandbox.host._trap import Trap
from dataflare_host.wasm.sandbox.host._values import (
    PluginInfo,
    call_error,
    check_sources,
    guest_consumed,
    guest_field,
    guest_text,
    shim_ran_out_of_memory,
)
from dataflare_host.wasm.sandbox.protocol import GuestRecord

__all__ = ["WasmPlugin"]


class WasmPlugin(Plugin):
    """A plugin compiled to a WASM component, run sandboxed by wasmtime."""

    def __init__(
        self,
        path: str | Path,
        params: Mapping[str, str] | None = None,
        sandbox: SandboxLimits | None = None,
    ) -> None:
        self.path = Path(path)
        self.sandbox = sandbox or SandboxLimits()
        self._params = dict(params or {})
        self._warm_up: list[Record] = []
        self._lock = threading.Lock()
        self._idle: list[Instance] = []
        self._busy: list[Instance] = []  # with calls in flight (see _send_on_instance)
        self._ahead_out = 0  # begun batches sent and not finished (see _Ahead)
        first = self._new_instance(init=False)
        info = self._describe(first)
        kind = info.kind
        self.info = info
        super().__init__(
            name=info.name,
            kind=kind,
            origin=str(self.path),
            initial=info.initial,
            state=info.state,
        )
        # Checked here, with the SDK's own rule, before the guest sees them: the
        # error then carries its setting (a pipeline points at the params line).
        try:
            resolve_params(f"plugin {info.name!r} ({self.path})", info.params, self._params)
        except ConfigurationError:
            first.close()
            raise
        self._init(first)
        self._idle.append(first)
        self._pool: ThreadPoolExecutor | None = None

    # -- instances ----------------------------------------------------------

    def _new_instance(self, *, init: bool = True) -> Instance:
        instance = Instance(self.path, self.sandbox, str(self.path))
        if init:
            self._init(instance)
            if self._warm_up:
                # A replacement instance must know what look-back taught the one
                # it replaces (a non-aggregate keeps that in its guest context).
                try:
                    replay = self._call_look_back(instance, self._warm_up)
                except Trap as trap:
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

    def _describe(self, instance: Instance) -> PluginInfo:
        try:
            return PluginInfo.from_wit(instance.call("describe"), self.path)
        except Trap as trap:
            raise ConfigurationError(f"{self.path}: describe trapped: {trap}") from trap
        finally:
            # On success the instance is used again (init), so close only on failure.
            if sys.exc_info()[0] is not None:
                instance.close()

    def _init(self, instance: Instance) -> None:
        try:
            outcome = instance.call("init", list(self._params.items()))
        except Trap as trap:
            instance.close()
            raise ConfigurationError(
                f"plugin {self.info.name!r} ({self.path}): init trapped: {trap}"
            ) from trap
        if outcome is not None:
            instance.close()
            raise call_error(outcome, self.path)

    def _acquire(self) -> Instance:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self._new_instance()

    def _release(self, instance: Instance) -> None:
        """Its call is finished: idle again, unless a call queued behind is in flight."""
        with self._lock:
            if instance.in_flight:
                return
            if instance in self._busy:
                self._busy.remove(instance)
            self._idle.append(instance)

    def _drop(self, instance: Instance) -> None:
        """Close an instance (trapped, untrusted, swapped out, or already lost) and forget
        it: it is no longer the plugin's."""
        instance.close()
        with self._lock:
            if instance in self._busy:
                self._busy.remove(instance)

    # -- processing ---------------------------------------------------------

    def _run(self, records: Sequence[Record], accumulator: bytes | None) -> BatchResult:
        shards = self._shard_count(len(records))
        if shards == 1:
            return self._run_narrowing(records, accumulator)
        size = math.ceil(len(records) / shards)
        pieces = [records[start : start + size] for start in range(0, len(records), size)]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                self.sandbox.instances, thread_name_prefix="dataflare-wasm"
            )
        results = list(self._pool.map(lambda piece: self._run_narrowing(piece, None), pieces))
        return _merge(results, [len(p) for p in pieces])

    def _run_narrowing(
        self,
        records: Sequence[Record],
        accumulator: bytes | None,
        first: BatchResult | None = None,
    ) -> BatchResult:
        """Run a batch; when it runs out of time, find the record that does.

        The time limit is per call, so records that are each fast enough can
        exceed it together. Rather than blame the batch's first record, the batch
        is then run again one record at a time (carrying an aggregate's state):
        only a record that exceeds the limit alone is reported, and every record
        before it keeps its outputs. A timed-out batch thus costs at most two
        limits before its culprit is known.
        """
        result = first if first is not None else self._run_on_instance(records, accumulator)
        if len(records) < 2 or not _timed_out(result):
            return result
        results: list[BatchResult] = []
        state = accumulator
        for record in records:
            single = self._run_on_instance([record], state)
            results.append(single)
            state = single.accumulator
            if single.error is not None:
                break
        merged = _merge(results, [1] * len(results))
        return attrs.evolve(merged, accumulator=state)

    def _shard_count(self, count: int) -> int:
        # State lives in one instance: it is never split across several.
        if self.carries_state or self.sandbox.instances == 1:
            return 1
        # Instances out on begun batches are busy: a split takes only the others.
        with self._lock:
            busy = sum(not instance.closed for instance in self._busy)
        free = max(1, self.sandbox.instances - busy)
        return max(1, min(free, count // self.sandbox.min_shard))

    def _run_on_instance(self, records: Sequence[Record], accumulator: bytes | None) -> BatchResult:
        request = self._prepare_kind(records, accumulator)
        instance, call = self._send_on_instance(request)
        return self._finish_on_instance(instance, call, records, accumulator, request)

    @property
    def concurrent_batches(self) -> int:
        """For a stateless plugin, ``instances`` times the calls each takes at once (one
        running, one queued behind it): each begun batch runs whole on one instance (a
        batch run by :meth:`process` is split across them)."""
        return 1 if self.carries_state else self.sandbox.instances * CALLS_IN_FLIGHT

    def _begin(self, records: Sequence[Record]) -> Begun | None:
        ahead = _Ahead(self, records, self._prepare_kind(records, None))
        ahead.start()  # sent now if an instance is free, else by Begun.start or finish
        return Begun(ahead.finish, ahead.answered, ahead.cancel, ahead.start)

    def _take_ahead_slot(self, *, force: bool = False) -> bool:
        """Count a begun batch out if fewer than :attr:`concurrent_batches` are (or ``force``)."""
        with self._lock:
            if self._ahead_out >= self.concurrent_batches and not force:
                return False
            self._ahead_out += 1
            return True

    def _give_ahead_slot(self) -> None:
        with self._lock:
            self._ahead_out -= 1

    def _send_on_instance(self, request: PreparedCall) -> tuple[Instance, Call]:
        """Send ``request``; the instance and its call.

        On an idle instance; else on a new one while fewer than ``instances`` are
        busy; else queued behind the call of a busy one with room, which runs it
        the moment it answers (the guest never waits for the host between two
        batches); else on a new one.
        """
        with self._lock:
            self._busy = [instance for instance in self._busy if not instance.closed]
            if self._idle:
                instance: Instance | None = self._idle.pop()
            elif len(self._busy) < self.sandbox.instances:
                instance = None
            else:
                roomy = [i for i in self._busy if i.in_flight < CALLS_IN_FLIGHT]
                instance = min(roomy, key=lambda i: i.in_flight) if roomy else None
            if instance is not None:
                # Sent under the lock: no other thread takes the room meanwhile (the
                # sandbox process drains its pipe at once, so the write is quick).
                return self._send_on(instance, request)
        instance = self._new_instance()
        with self._lock:
            return self._send_on(instance, request)

    def _send_on(self, instance: Instance, request: PreparedCall) -> tuple[Instance, Call]:
        if instance not in self._busy:
            self._busy.append(instance)
        try:
            return instance, instance.send(request)
        except BaseException:
            if instance.closed or not instance.in_flight:  # else busy with calls before
                self._busy.remove(instance)
                if not instance.closed:
                    self._idle.append(instance)
            raise

    def _finish_on_instance(
        self,
        instance: Instance,
        call: Call,
        records: Sequence[Record],
        accumulator: bytes | None,
        request: PreparedCall,
    ) -> BatchResult:
        try:
            result = self._finish_kind(call.wait(), records)
        except Abandoned:
            # Queued behind a call that lost the instance: it never ran, so it runs now
            # on another one.
            self._drop(instance)  # lost already: closing it again is a no-op
            again, call = self._send_on_instance(request)
            return self._finish_on_instance(again, call, records, accumulator, request)
        except Trap as trap:
            self._drop(instance)  # never reuse an instance that trapped
            if self.state_bounds is not None:
                raise self._state_lost(str(trap), records) from trap
            return self._trap_result(records, accumulator, trap)
        except SerializationError as exc:
            self._drop(instance)  # it wrote a malformed framing: not to be trusted again
            raise self._named(exc) from exc
        except PluginError:
            self._drop(instance)
            raise
        if result.error is not None and result.error.error_type == "MemoryError":
            # The guest hit the memory cap and survived as a MemoryError: its
            # memory is suspect, so this instance goes; the batch fails at a limit.
            self._drop(instance)
            if self.state_bounds is not None:
                raise self._state_lost("it reached the memory cap", records)
            error = result.error
            limit = error.replace(
                LimitExceededError,
                error_type="MemoryError",
                error_message=f"memory cap of {self.sandbox.memory_limit_mb} MiB "
                f"reached ({error.error_message or 'allocation failed'})",
            )
            return attrs.evolve(result, error=limit)
        # A Python exception the guest caught (or success) leaves the instance as
        # sound as a native plugin after a raise: keep it, with its state.
        if not self.closed:
            self._release(instance)
        elif not instance.in_flight:  # closed while the batch ran (a hot reload swapped it)
            self._drop(instance)  # (with a call queued behind, that call's finish closes it)
        return result

    def _state_lost(self, why: str, records: Sequence[Record]) -> PluginError:
        first = records[0].offset if records else -1
        return PluginError(
            f"plugin {self.name!r} ({self.path}) keeps state and lost its instance ({why}) on a "
            f"batch of {len(records)} record(s) from offset {first}: the state went with it, so "
            "the batch fails whatever on_error says; a pipeline resumes from its last "
            "checkpoint, state included"
        )

    def _trap_result(
        self, records: Sequence[Record], accumulator: bytes | None, trap: Trap
    ) -> BatchResult:
        first = records[0].offset if records else -1
        # A batch narrowed down to one record (see _run_narrowing) names it.
        culprit = records[0] if len(records) == 1 else None
        where = (
            f"the record at offset {first}"
            if culprit is not None
            else f"a batch of {len(records)} records starting at offset {first}"
        )
        error: ProcessingError
        if trap.memory:
            error = self._error(
                first,
                0,
                "MemoryError",
                f"{where} reached the memory cap of {self.sandbox.memory_limit_mb} MiB",
                cls=LimitExceededError,
                record=culprit,
            )
        elif trap.timed_out:
            error = self._error(
                first,
                0,
                "TimeLimitExceeded",
                f"{where} ran past the {self.sandbox.time_limit_s:g} s time limit",
                cls=LimitExceededError,
                record=culprit,
            )
        else:
            error = self._error(
                first,
                0,
                "Trap",
                f"the component trapped ({trap}) on {where}; see the dataflare.guest log",
                record=culprit,
            )
        acc = (
            accumulator
            if accumulator is not None
            else (self._initial if self.kind is PluginKind.AGGREGATE else None)
        )
        return BatchResult([], [], 0, error, acc)

    def _error(
        self,
        offset: int,
        index: int,
        error_type: str,
        message: str,
        *,
        cls: type[ProcessingError] = ProcessingError,
        record: Record | None = None,
    ) -> ProcessingError:
        """An error of this plugin at record ``offset``, ``index`` in its batch.

        An error about a whole batch (a trap or a limit) names its first record;
        ``record``, when one record is at fault, gives the key and value previews
        (built here from what the host sent, exactly as the SDK builds them).
        """
        return cls(
            plugin=self.name,
            kind=self.kind.value,
            offset=offset,
            index=index,
            error_type=error_type,
            error_message=message,
            record_key=preview(record.key) if record is not None else None,
            record_value=preview(record.value) if record is not None else None,
        )

    def _named(self, error: SerializationError) -> SerializationError:
        """``error`` with this component's path in front, unless it names it already."""
        if str(self.path) in str(error):
            return error
        return SerializationError(f"{self.path}: {error}")

    def _prepare_kind(self, records: Sequence[Record], accumulator: bytes | None) -> PreparedCall:
        batch = encode_request(records, parsed=self.info.parsed_json)
        if self.kind is PluginKind.AGGREGATE:
            return prepare_call(self.sandbox, "aggregate", batch, encode_accumulator(accumulator))
        return prepare_call(self.sandbox, self.kind.value.replace("_", "-"), batch)

    def _finish_kind(self, out: Any, records: Sequence[Record]) -> BatchResult:
        kind = self.kind
        if not isinstance(out, GuestRecord):
            if shim_ran_out_of_memory(out):
                # The cap was hit while the shim encoded the results: a limit on
                # this batch (so on_error applies), not a broken component.
                raise Trap("the memory cap was reached", timed_out=False, memory=True)
            raise call_error(out, self.path)
        consumed = guest_consumed(out, len(records), self.path, "guest")
        error = self._processing_error(getattr(out, "error", None), records, consumed)
        if kind is PluginKind.FILTER:
            kept = decode_kept(guest_text(out, "kept"), consumed)
            return BatchResult([records[i] for i in kept], kept, consumed, error)
        outputs, sources = decode_records(guest_text(out, "records"), records, consumed)
        check_sources(kind, sources, consumed, self.path)
        acc: bytes | None = None
        if kind is PluginKind.AGGREGATE:
            acc = decode_accumulator(guest_text(out, "accumulator"))
        return BatchResult(outputs, sources, consumed, error, acc)

    def _processing_error(
        self, raw: Any, records: Sequence[Record], consumed: int
    ) -> ProcessingError | None:
        if raw is None:
            return None
        if consumed >= len(records):
            raise SerializationError(f"{self.path}: guest reported an error past the batch's end")
        # Name, kind and offset come from what the host knows, not from the guest.
        message, location, frames = split_message(guest_field(raw, "message", str))
        return self._error(
            records[consumed].offset,
            consumed,
            guest_field(raw, "error-type", str),
            message,
            record=records[consumed],
        ).replace(location=location, frames=frames)

    @property
    def has_look_back(self) -> bool:
        """Whether the plugin defines a ``@look_back`` hook."""
        return self.info.has_look_back

    def _look_back(self, records: Sequence[Record]) -> LookBackResult:
        instance = self._acquire()
        try:
            result = self._call_look_back(instance, records)
        except Trap as trap:
            instance.close()
            first = records[0].offset if records else -1
            error = self._error(first, 0, "Trap", f"the component trapped in look_back ({trap})")
            return LookBackResult(None, 0, error)
        except SerializationError as exc:
            instance.close()
            raise self._named(exc) from exc
        except PluginError:
            instance.close()
            raise
        if result.error is not None:
            self._release(instance)
            return result
        self._warm_up = list(records)
        with self._lock:
            stale, self._idle = self._idle, [instance]
        for other in stale:  # they missed the warm-up: replaced on demand
            other.close()
        return result

    def _call_look_back(self, instance: Instance, records: Sequence[Record]) -> LookBackResult:
        out = instance.call("look-back", encode_request(records, parsed=self.info.parsed_json))
        if not isinstance(out, GuestRecord):
            raise call_error(out, self.path)
        consumed = guest_consumed(out, len(records), self.path, "look-back")
        raw_acc = getattr(out, "accumulator", None)
        accumulator = None if raw_acc is None else decode_accumulator(raw_acc)
        failure = self._processing_error(getattr(out, "error", None), records, consumed)
        return LookBackResult(accumulator, consumed, failure)

    def _snapshot_state(self) -> bytes:
        bounds = self.state_bounds
        assert bounds is not None  # Plugin.snapshot_state asks only a plugin with state
        instance = self._acquire()
        try:
            out = instance.call("snapshot-state")
        except Trap as trap:
            instance.close()
            raise PluginError(
                f"plugin {self.name!r} ({self.path}): snapshot-state trapped ({trap}); its "
                "state is lost"
            ) from trap
        self._release(instance)
        if type(out) is not str:
            raise call_error(out, self.path)
        # The guest is untrusted: a snapshot longer than its declared bounds allow
        # is refused before it is decoded, and what is decoded is checked in full.
        what = f"{self.path}: the state snapshot from snapshot-state"
        if len(out) > bounds.wire_limit():
            raise SerializationError(
                f"{what} is {len(out):,} bytes, more than the {bounds.wire_limit():,} its "
                f"declared bounds ({bounds.max_entries:,} entries, {bounds.max_bytes:,} "
                "bytes) allow"
            )
        try:
            snapshot = out.encode("latin-1")
        except UnicodeEncodeError as exc:
            raise SerializationError(
                f"{what} holds {exc.object[exc.start]!r} at {exc.start:,}, above U+00FF, so it "
                "does not carry bytes"
            ) from None
        bounds.check_snapshot(snapshot, what)
        return snapshot

    def _restore_state(self, snapshot: bytes) -> None:
        instance = self._acquire()
        try:
            outcome = instance.call("restore-state", snapshot.decode("latin-1"))
        except Trap as trap:
            instance.close()
            raise PluginError(
                f"plugin {self.name!r} ({self.path}): restore-state trapped ({trap})"
            ) from trap
        self._release(instance)
        if outcome is not None:
            raise call_error(outcome, self.path)

    def _close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        with self._lock:
            idle, self._idle = self._idle, []
        for instance in idle:
            instance.close()
