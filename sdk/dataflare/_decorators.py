"""The decorators a plugin author writes: they mark a function and return it unchanged.

Each works bare (``@map``) or with keyword options (``@map(name="upper")``), and
checks the function's signature when applied, so misuse fails at import time.

Shadowing: ``filter`` and ``map`` share their names with builtins. Import the
module instead when you need both (``import dataflare as df`` then ``@df.filter``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

from ._kinds import AggregateEmit, PluginKind
from ._windows import Window
from .runtime._definition import MARK, OPTIONAL_PARAM, InitHook, LookBackHook, PluginDefinition

__all__ = ["OPTIONAL", "aggregate", "array_map", "filter", "filter_map", "init", "look_back", "map"]

OPTIONAL = OPTIONAL_PARAM
"""Declares an optional parameter without a default, ``params={"limit": dataflare.OPTIONAL}``:
when not given, it is absent from the params (``params.get("limit")`` is None)."""

F = TypeVar("F", bound=Callable[..., Any])

_REQUIRED_ARGS = {
    PluginKind.FILTER: ("record",),
    PluginKind.MAP: ("record",),
    PluginKind.FILTER_MAP: ("record",),
    PluginKind.ARRAY_MAP: ("record",),
    PluginKind.AGGREGATE: ("accumulator", "record"),
}


def _positional_count(func: Callable[..., Any], decorator: str) -> int:
    """How many positional arguments ``func`` takes; rejects what we cannot call."""
    label = getattr(func, "__qualname__", repr(func))
    if inspect.isclass(func) or not callable(func):
        raise TypeError(f"@{decorator} must decorate a function, not {func!r}.")
    if inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func):
        raise TypeError(
            f"@{decorator} cannot decorate async function {label!r}: plugins run "
            "synchronously (inside the WASM guest too); make it a plain def."
        )
    params = inspect.signature(func).parameters.values()
    count = 0
    for param in params:
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            count += 1
        elif param.kind is param.VAR_POSITIONAL:
            raise TypeError(
                f"@{decorator} function {label!r} must list its arguments by name, "
                f"not take *{param.name}."
            )
        elif param.kind is param.KEYWORD_ONLY and param.default is param.empty:
            raise TypeError(
                f"@{decorator} function {label!r} has a keyword-only argument "
                f"{param.name!r} without a default; the host never passes it."
            )
    return count


def _check_plugin_signature(func: Callable[..., Any], kind: PluginKind) -> bool:
    """Check ``func`` fits ``kind``; return whether it takes the context argument."""
    required = _REQUIRED_ARGS[kind]
    count = _positional_count(func, kind.value)
    label = getattr(func, "__qualname__", repr(func))
    if count not in (len(required), len(required) + 1):
        expected = ", ".join(required)
        raise TypeError(
            f"@{kind} function {label!r} must take ({expected}) or "
            f"({expected}, context), but it takes {count} positional argument"
            f"{'' if count == 1 else 's'}."
        )
    if inspect.isgeneratorfunction(func) and kind is not PluginKind.ARRAY_MAP:
        raise TypeError(
            f"@{kind} function {label!r} is a generator (it uses yield); only "
            "@array_map plugins may yield their outputs."
        )
    return count == len(required) + 1


def _mark(func: F, value: object) -> F:
    if getattr(func, MARK, None) is not None:
        label = getattr(func, "__qualname__", repr(func))
        raise TypeError(
            f"{label!r} is already a DataFlare plugin or hook; apply one decorator only."
        )
    setattr(func, MARK, value)
    return func


def _make_kind_decorator(kind: PluginKind) -> Any:
    def decorate(
        func: F,
        *,
        name: str | None,
        params: Mapping[str, str | None] | None,
        initial: bytes = b"",
        emit: AggregateEmit | str = AggregateEmit.EACH,
        window: Window | None = None,
    ) -> F:
        takes_context = _check_plugin_signature(func, kind)
        label = getattr(func, "__qualname__", repr(func))
        if type(initial) is not bytes:
            raise TypeError(
                f"@aggregate function {label!r}: initial= must be bytes (got {initial!r} "
                f'that is a {type(initial).__name__}); e.g. initial=b"0".'
            )
        try:
            emit_value = AggregateEmit(emit)
        except ValueError:
            choices = ", ".join(repr(e.value) for e in AggregateEmit)
            raise TypeError(
                f"@aggregate function {label!r}: emit= must be one of {choices} (got {emit!r})."
            ) from None
        _check_params(params, kind.value, label)
        if window is not None and not isinstance(window, Window):
            raise TypeError(
                f"@aggregate function {label!r}: window= must be dataflare.tumbling(...) or "
                f"dataflare.sliding(...), not {window!r}."
            )
        definition = PluginDefinition(
            function=func,
            kind=kind,
            name=name or func.__name__,
            takes_context=takes_context,
            params=params,
            initial=initial,
            emit=emit_value,
            window=window,
        )
        return _mark(func, definition)

    return decorate


def _check_params(params: Mapping[str, str | None] | None, decorator: str, label: str) -> None:
    if params is None:
        return
    if not isinstance(params, Mapping):
        raise TypeError(
            f"@{decorator} function {label!r}: params= must map each parameter name to "
            f"its default (a str, None when required, or dataflare.OPTIONAL), not "
            f"{type(params).__name__}."
        )
    for key, default in params.items():
        if not isinstance(key, str) or not (default is None or isinstance(default, str)):
            raise TypeError(
                f"@{decorator} function {label!r}: params= entry {key!r}: {default!r} must "
                "map a str name to a str default, to None when the parameter is required, "
                "or to dataflare.OPTIONAL when it may be left out."
            )


_decorate_filter = _make_kind_decorator(PluginKind.FILTER)
_decorate_map = _make_kind_decorator(PluginKind.MAP)
_decorate_filter_map = _make_kind_decorator(PluginKind.FILTER_MAP)
_decorate_array_map = _make_kind_decorator(PluginKind.ARRAY_MAP)
_decorate_aggregate = _make_kind_decorator(PluginKind.AGGREGATE)


@overload
def filter(func: F, /) -> F: ...
@overload
def filter(
    *, name: str | None = None, params: Mapping[str, str | None] | None = None
) -> Callable[[F], F]: ...
def filter(
    func: F | None = None,
    /,
    *,
    name: str | None = None,
    params: Mapping[str, str | None] | None = None,
) -> F | Callable[[F], F]:
    """Mark ``func(record[, context]) -> bool`` as a filter plugin: keep records it accepts.

    >>> @filter
    ... def has_error(record):
    ...     return b"error" in record.value
    """
    return _apply(_decorate_filter, func, name=name, params=params)


@overload
def map(func: F, /) -> F: ...
@overload
def map(
    *, name: str | None = None, params: Mapping[str, str | None] | None = None
) -> Callable[[F], F]: ...
def map(
    func: F | None = None,
    /,
    *,
    name: str | None = None,
    params: Mapping[str, str | None] | None = None,
) -> F | Callable[[F], F]:
    """Mark ``func(record[, context]) -> Record`` as a map plugin: one record out per record in.

    >>> @map
    ... def upper(record):
    ...     return record.evolve(value=record.value.upper())
    """
    return _apply(_decorate_map, func, name=name, params=params)


@overload
def filter_map(func: F, /) -> F: ...
@overload
def filter_map(
    *, name: str | None = None, params: Mapping[str, str | None] | None = None
) -> Callable[[F], F]: ...
def filter_map(
    func: F | None = None,
    /,
    *,
    name: str | None = None,
    params: Mapping[str, str | None] | None = None,
) -> F | Callable[[F], F]:
    """Mark ``func(record[, context]) -> Record | None`` as a filter_map plugin.

    Returning None drops the record; returning a record keeps it, transformed.
    """
    return _apply(_decorate_filter_map, func, name=name, params=params)


@overload
def array_map(func: F, /) -> F: ...
@overload
def array_map(
    *, name: str | None = None, params: Mapping[str, str | None] | None = None
) -> Callable[[F], F]: ...
def array_map(
    func: F | None = None,
    /,
    *,
    name: str | None = None,
    params: Mapping[str, str | None] | None = None,
) -> F | Callable[[F], F]:
    """Mark ``func(record[, context]) -> Iterable[Record]`` as an array_map plugin.

    Each input record becomes zero or more output records, in order; the
    function may return a list or ``yield`` its outputs.
    """
    return _apply(_decorate_array_map, func, name=name, params=params)


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
        count = _positional_count(f, "init")
        if count != 1:
            label = getattr(f, "__qualname__", repr(f))
            raise TypeError(
                f"@init function {label!r} must take exactly one argument (params), "
                f"but it takes {count}."
            )
        _check_params(params, "init", getattr(f, "__qualname__", repr(f)))
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
    count = _positional_count(func, "look_back")
    label = getattr(func, "__qualname__", repr(func))
    if count not in (1, 2):
        raise TypeError(
            f"@look_back function {label!r} must take (record) or (record, context), "
            f"but it takes {count}."
        )
    hook = LookBackHook(function=func, name=func.__name__, takes_context=count == 2)
    return _mark(func, hook)
