"""The WASM backend's batches begun ahead (:class:`_Ahead`), and a split batch's parts
merged back (:func:`_merge`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from dataflare import LimitExceededError, Record
from dataflare.runtime import BatchResult
from dataflare_host.wasm.sandbox.host._instance import Call, Instance, PreparedCall

__all__: list[str] = []


class _Backend(Protocol):
    """What a batch begun ahead asks of its :class:`~dataflare_host.plugins._wasm.WasmPlugin`."""

    def _take_ahead_slot(self, *, force: bool = False) -> bool: ...

    def _give_ahead_slot(self) -> None: ...

    def _send_on_instance(self, request: PreparedCall) -> tuple[Instance, Call]: ...

    def _finish_on_instance(
        self,
        instance: Instance,
        call: Call,
        records: Sequence[Record],
        accumulator: bytes | None,
        request: PreparedCall,
    ) -> BatchResult: ...

    def _run_narrowing(
        self,
        records: Sequence[Record],
        accumulator: bytes | None,
        first: BatchResult | None = None,
    ) -> BatchResult: ...

    def _drop(self, instance: Instance) -> None: ...


class _Ahead:
    """A stateless plugin's batch begun ahead (:meth:`WasmPlugin._begin`): its request
    is packed at once and sent when an instance has room (:meth:`start`)."""

    def __init__(self, plugin: _Backend, records: Sequence[Record], request: PreparedCall) -> None:
        self._plugin = plugin
        self._records = records
        self._prepared = request  # kept to send again if its instance is lost first
        self._request: PreparedCall | None = request  # None once sent
        self._sent: tuple[Instance, Call] | None = None
        self._finished = False

    def start(self) -> None:
        """Send the batch unless it is out or ``concurrent_batches`` begun batches already are."""
        if self._request is not None and self._plugin._take_ahead_slot():
            self._send()

    def _send(self) -> None:
        assert self._request is not None
        request, self._request = self._request, None
        try:
            self._sent = self._plugin._send_on_instance(request)
        except BaseException:
            self._plugin._give_ahead_slot()
            raise

    def answered(self, timeout_s: float) -> bool:
        """Whether :meth:`finish` would not wait (True when not sent: it sends, then waits)."""
        return self._sent is None or self._sent[1].answered(timeout_s)

    def finish(self) -> BatchResult:
        """The batch's result, narrowed to the record at fault after a time-out."""
        if self._request is not None:  # asked for before a slot came free: out now
            self._plugin._take_ahead_slot(force=True)
            self._send()
        assert self._sent is not None
        instance, call = self._sent
        self._finished = True  # the instance is the plugin's again: cancel leaves it
        records = self._records
        try:
            result = self._plugin._finish_on_instance(instance, call, records, None, self._prepared)
        finally:
            self._plugin._give_ahead_slot()
        return self._plugin._run_narrowing(records, None, first=result)

    def cancel(self) -> None:
        """Abandon the batch: a sent one's process is killed (it may be mid-batch);
        after :meth:`finish`, nothing."""
        self._request = None
        if self._sent is not None and not self._finished:
            self._finished = True
            self._plugin._drop(self._sent[0])
            self._plugin._give_ahead_slot()


def _timed_out(result: BatchResult) -> bool:
    error = result.error
    return isinstance(error, LimitExceededError) and error.error_type == "TimeLimitExceeded"


def _merge(results: list[BatchResult], sizes: list[int]) -> BatchResult:
    outputs: list[Record] = []
    sources: list[int] = []
    start = 0
    for result, size in zip(results, sizes, strict=True):
        outputs.extend(result.outputs)
        sources.extend(s + start for s in result.sources)
        if result.error is not None:
            shifted = result.error.replace(index=result.error.index + start)
            return BatchResult(outputs, sources, start + result.consumed, shifted)
        start += size
    return BatchResult(outputs, sources, start)
