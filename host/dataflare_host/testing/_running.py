"""Run a plugin exactly as the host does, and check both runtimes agree."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflare import Record
from dataflare.runtime import BatchResult
from dataflare_host.plugins import Plugin, Runtime, load_plugin
from dataflare_host.plugins._native import ModuleCache
from dataflare_host.wasm import component_for

from ._strategies import batches as default_batches

__all__ = ["ParityError", "assert_parity", "describe_difference", "run_plugin"]

PluginSource = str | os.PathLike[str] | Callable[..., Any] | ModuleType


class ParityError(AssertionError):
    """Native and WASM runs of one plugin disagreed; carries the (shrunk) batch."""

    def __init__(self, message: str, batch: list[Record], params: Mapping[str, str]) -> None:
        super().__init__(message)
        self.batch = batch
        self.params = dict(params)


# Property tests load a plugin once per example: import each file content once.
_modules = ModuleCache()


def _load(
    plugin: PluginSource, params: Mapping[str, str] | None, runtime: Runtime | None = None
) -> Plugin:
    return load_plugin(plugin, params, runtime=runtime, modules=_modules)


def run_plugin(
    plugin: PluginSource,
    records: Sequence[Record],
    params: Mapping[str, str] | None = None,
    *,
    accumulator: bytes | None = None,
) -> BatchResult:
    """Run ``plugin`` over ``records`` as the host would, and return the batch result.

    ``plugin`` is a ``.py`` or ``.wasm`` path, a decorated function, or a module.
    Params are resolved and the ``@init`` hook runs, exactly as in a pipeline.

    >>> import dataflare
    >>> @dataflare.filter
    ... def short(record):
    ...     return len(record.value) < 3
    >>> batch = [dataflare.Record(b"ab"), dataflare.Record(b"abcd")]
    >>> [r.value for r in run_plugin(short, batch).outputs]
    [b'ab']
    """
    loaded = _load(plugin, params)
    try:
        if accumulator is not None:
            loaded.accumulator = accumulator
        return loaded.process(list(records))
    finally:
        loaded.close()


def _fields(result: BatchResult) -> dict[str, Any]:
    error = None if result.error is None else (type(result.error).__name__, result.error.fields())
    return {
        "outputs": [
            (r.value, r.key, r.timestamp, dict(r.metadata), r.offset) for r in result.outputs
        ],
        "sources": list(result.sources),
        "consumed": result.consumed,
        "accumulator": result.accumulator,
        "error": error,
    }


def describe_difference(native: BatchResult, wasm: BatchResult) -> str | None:
    """What differs between two results of the same batch, or None when they agree."""
    left, right = _fields(native), _fields(wasm)
    lines = [
        f"  {name}: native {left[name]!r:.300}\n  {' ' * len(name)}  wasm   {right[name]!r:.300}"
        for name in left
        if left[name] != right[name]
    ]
    return "\n".join(lines) if lines else None


def assert_parity(
    plugin: str | os.PathLike[str],
    batches: st.SearchStrategy[list[Record]] | None = None,
    params: Mapping[str, str] | None = None,
    *,
    wasm: str | os.PathLike[str] | None = None,
    max_examples: int = 50,
    batches_per_run: int = 2,
) -> None:
    """Assert the plugin file gives identical results natively and as a WASM component.

    Builds the component (cached by content) unless ``wasm`` names one, then runs
    both on Hypothesis-generated batches (``batches_per_run`` in a row, so an
    aggregate's carried state is compared too). On a difference Hypothesis
    shrinks the input, and :class:`ParityError` reports the minimal batch.
    """
    source = Path(plugin)
    # The same build cache as dataflare build and pipelines: built once per content.
    component = Path(wasm) if wasm is not None else component_for(source)
    strategy = batches if batches is not None else default_batches()
    params = dict(params or {})
    failures: list[tuple[list[Record], str]] = []

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(runs=st.lists(strategy, min_size=1, max_size=batches_per_run))
    def check(runs: list[list[Record]]) -> None:
        native, built = _load(source, params), _load(component, params)
        try:
            for batch in runs:
                difference = describe_difference(native.process(batch), built.process(batch))
                if difference is not None:
                    failures.append((batch, difference))
                    raise AssertionError(difference)
        finally:
            native.close()
            built.close()

    try:
        check()
    except AssertionError:
        if not failures:
            raise
        # Hypothesis replays the shrunk example last: that is the minimal batch.
        batch, difference = failures[-1]
        raise ParityError(
            f"{source} behaves differently as a WASM component ({component}) on this "
            f"batch of {len(batch)} record(s):\n  {batch!r}\n{difference}",
            batch,
            params,
        ) from None
