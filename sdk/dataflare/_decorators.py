"""The decorators a plugin author writes: they mark a function and return it unchanged.

Each works bare (``@map``) or with keyword options (``@map(name="upper")``), and
checks the function's signature when applied, so misuse fails at import time.

Shadowing: ``filter`` and ``map`` share their names with builtins. Import the
module instead when you need both (``import dataflare as df`` then ``@df.filter``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

from ._kinds import AggregateEmit, PluginKind
from ._windows import Window
from .runtime._definition import MARK, OPTIONAL_PARAM, InitHook, LookBackHook, PluginDefinition
from .runtime._signatures import (
    check_aggregate_options,
    check_params,
    check_plugin_signature,
    check_state,
    label_of,
    positional_count,
)
from .runtime._state import KeyedState

__all__ = ["OPTIONAL", "aggregate", "array_map", "filter", "filter_map", "init", "look_back", "map"]

OPTIONAL = OPTIONAL_PARAM
"""Declares an optional parameter without a default, ``params={"limit": dataflare.OPTIONAL}``:
when not given, it is absent from the params (``params.get("limit")`` is None)."""

F = TypeVar("F", bound=Callable[..., Any])


def _mark(func: F, value: object) -> F:
    if getattr(func, MARK, None) is not None:
        raise TypeError(
            f"{label_of(func)!r} is already a DataFlare plugin or hook; apply one decorator only."
        )
    setattr(func, MARK, value)
    return func


def _make_kind_decorator(kind: PluginKind) -> Any:
    def decorate(
        func: F,
        *,
        name: str | None,
        params: Mapping[str, str | None] | None,
        state: KeyedState | None = None,
        initial: bytes = b"",
        emit: AggregateEmit | str = AggregateEmit.EACH,
        window: Window | None = None,
    ) -> F:
        label = label_of(func)
        bounds = check_state(state, kind, label)
        takes_context = check_plugin_signature(func, kind, stateful=bounds is not None)
        emit_value = check_aggregate_options(label, initial, emit, window)
        check_params(params, kind.value, label)
        definition = PluginDefinition(
            function=func,
            kind=kind,
            name=name or func.__name__,
            takes_context=takes_context,
            params=params,
            initial=initial,
            emit=emit_value,
            window=window,
            state=bounds,
        )
        return _mark(func, definition)

    return decorate


_decorate_filter = _make_kind_decorator(PluginKind.FILTER)
_decorate_map = _make_kind_decorator(PluginKind.MAP)
_decorate_filter_map = _make_kind_decorator(PluginKind.FILTER_MAP)
_decorate_array_map = _make_kind_decorator(PluginKind.ARRAY_MAP)
_decorate_aggregate = _make_kind_decorator(PluginKind.AGGREGATE)


@overload
def filter(func: F, /) -> F: ...
@overload
def filter(
    *,
    name: str | None = None,
    params: Mapping[str, str | None] | None = None,
    state: KeyedState | None = None,
) -> Callable[[F], F]: ...
def filter(
    func: F | None = None,
    /,
    *,
    name: str | None = None,
    params: Mapping[str, str | None] | None = None,
    state: KeyedState | None = None,
) -> F | Callable[[F], F]:
    """Mark ``func(record[, context]) -> bool`` as a filter plugin: keep records it accepts.

    Every kind but aggregate takes ``state=dataflare.KeyedState(max_entries=..., max_bytes=...)``:
    the function then takes ``(record, state[, context])`` and ``state`` is a bounded
    bytes -> bytes mapping that pipelines checkpoint (see :class:`~dataflare.KeyedState`).

    >>> @filter
    ... def has_error(record):
    ...     return b"error" in record.value
    """
    return _apply(_decorate_filter, func, name=name, params=params, state=state)


@overload
def map(func: F, /) -> F: ...
@overload
def map(
    *,
    name: str | None = None,
    params: Mapping[str, str | None] | None = None,
    state: KeyedState | None = None,
) -> Callable[[F], F]: ...
def map(
    func: F | None = None,
    /,
    *,
    name: str | None = None,
    params: Mapping[str, str | None] | None = None,
    state: KeyedState | None = None,
) -> F | Callable[[F], F]:
    """Mark ``func(record[, context]) -> Record`` as a map plugin: one record out per record in.

    >>> @map
    ... def upper(record):
    ...     return record.evolve(value=record.value.upper())
    """
    return _apply(_decorate_map, func, name=name, params=params, state=state)


@overload
def filter_map(func: F, /) -> F: ...
@overload
def filter_map(
    *,
    name: str | None = None,
    params: Mapping[str, str | None] | None = None,
    state: KeyedState | None = None,
) -> Callable[[F], F]: ...
def filter_map(
    func: F | None = None,
    /,
    *,
    name: str | None = None,
    params: Mapping[str, str | None] | None = None,
    state: KeyedState | None = None,
) -> F | Callable[[F], F]:
    """Mark ``func(record[, context]) -> Record | None`` as a filter_map plugin.

    Returning None drops the record; returning a record keeps it, transformed.
    """
    return _apply(_decorate_filter_map, func, name=name, params=params, state=state)


@overload
def array_map(func: F, /) -> F: ...
@overload
def array_map(
    *,
    name: str | None = None,
    params: Mapping[str, str | None] | None = None,
    state: KeyedState | None = None,
) -> Callable[[F], F]: ...
def array_map(
    func: F | None = None,
    /,
    *,
    name: str | None = None,
    params: Mapping[str, str | None] | None = None,
    state: KeyedState | None = None,
) -> F | Callable[[F], F]:
    """Mark ``func(record[, context]) -> Iterable[Record]`` as an array_map plugin.

    Each input record becomes zero or more output records, in order; the
    function may return a list or ``yield`` its outputs.
    """
    return _apply(_decorate_array_map, func, name=name, params=params, state=state)


@overload
def aggregate(func: F, /) -> F: ...
@overload
def aggregate(
    *,
    name: str | None = None,
    params: Mapping[str, str | None] | None = None,
    initial: bytes = b"",
    emit: AggregateEmit | str = AggregateEmit.EACH,
    window: Window | None = None,
) -> Callable[[F], F]: ...
def aggregate(
    func: F | None = None,
    /,
    *,
    name: str | None = None,
    params: Mapping[str, str | None] | None = None,
    initial: bytes = b"",
    emit: AggregateEmit | str = AggregateEmit.EACH,
    window: Window | None = None,
) -> F | Callable[[F], F]:
    """Mark ``func(accumulator, record[, context]) -> bytes`` as an aggregate plugin.

    The accumulator starts as ``initial`` and the host keeps it across batches.
    With ``emit="each"`` (Fluvio's running fold) every input emits a copy of the
    record whose value is the new accumulator; with ``emit="batch"`` only the
    batch's last record does. With ``window=dataflare.tumbling(...)`` or
    ``dataflare.sliding(...)`` records are folded per time window instead, and each
    window emits one record when it closes (see :func:`dataflare.tumbling`).

    >>> @aggregate(initial=b"0")
    ... def count(acc, record):
    ...     return str(int(acc) + 1).encode()
    """
    return _apply(
        _decorate_aggregate,
        func,
        name=name,
        params=params,
        initial=initial,
        emit=emit,
        window=window,
    )


def _apply(decorate: Callable[..., Any], func: F | None, **options: Any) -> F | Callable[[F], F]:
    if func is None:
        return lambda f: decorate(f, **options)
    return decorate(func, **options)  # type: ignore[no-any-return]


@overload
def init(func: F, /) -> F: ...
@overload
def init(*, params: Mapping[str, str | None] | None = None) -> Callable[[F], F]: ...
def init(
    func: F | None = None,
    /,
    *,
    params: Mapping[str, str | None] | None = None,
) -> F | Callable[[F], F]:
    """Mark ``func(params) -> context`` as the plugin's init hook.

    It runs once, before any record, with the plugin's parameters (a read-only
    str -> str mapping). Whatever it returns is passed as the last argument of
    the plugin function, when that function takes one. A raise here is a
    :class:`~dataflare.ConfigurationError`.

    >>> import re
    >>> @init(params={"pattern": None})
    ... def compile_pattern(params):
    ...     return re.compile(params["pattern"])
    """

    def decorate(f: F) -> F:
        count = positional_count(f, "init")
        if count != 1:
            raise TypeError(
                f"@init function {label_of(f)!r} must take exactly one argument (params), "
                f"but it takes {count}."
            )
        check_params(params, "init", label_of(f))
        return _mark(f, InitHook(function=f, name=f.__name__, params=params))

    return decorate if func is None else decorate(func)


def look_back(func: F) -> F:
    """Mark ``func(record[, context]) -> bytes | None`` as the plugin's warm-up hook.

    Before the first record, the host calls it with each of the last N records
    (or those younger than an age) of a configured source, oldest first
    (Fluvio's look_back). For an aggregate, a returned ``bytes`` becomes the
    accumulator, so a running value resumes; other plugins keep what they learn
    in their context (the object their ``@init`` hook returned) and return None.

    >>> @look_back
    ... def resume(record):
    ...     return record.value  # the last emitted running total
    """
    count = positional_count(func, "look_back")
    if count not in (1, 2):
        raise TypeError(
            f"@look_back function {label_of(func)!r} must take (record) or (record, context), "
            f"but it takes {count}."
        )
    hook = LookBackHook(function=func, name=func.__name__, takes_context=count == 2)
    return _mark(func, hook)
