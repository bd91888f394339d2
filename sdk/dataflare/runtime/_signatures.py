"""The checks the decorators run when applied, so that misuse fails at import time.

Kept out of ``dataflare._decorators`` so the author's face stays what authors
read: the decorators, their options and their docstrings.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from dataflare._kinds import AggregateEmit, PluginKind
from dataflare._windows import Window

from ._state import KeyedState, StateBounds

__all__ = [
    "check_aggregate_options",
    "check_params",
    "check_plugin_signature",
    "check_state",
    "label_of",
    "positional_count",
]

_REQUIRED_ARGS = {
    PluginKind.FILTER: ("record",),
    PluginKind.MAP: ("record",),
    PluginKind.FILTER_MAP: ("record",),
    PluginKind.ARRAY_MAP: ("record",),
    PluginKind.AGGREGATE: ("accumulator", "record"),
}


def label_of(func: Callable[..., Any]) -> str:
    """How messages name a decorated function."""
    return getattr(func, "__qualname__", repr(func))


def positional_count(func: Callable[..., Any], decorator: str) -> int:
    """How many positional arguments ``func`` takes; rejects what we cannot call."""
    label = label_of(func)
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


def check_plugin_signature(func: Callable[..., Any], kind: PluginKind, *, stateful: bool) -> bool:
    """Check ``func`` fits ``kind`` (and takes the state when ``stateful``); return whether it
    takes the context argument."""
    required = _REQUIRED_ARGS[kind] + (("state",) if stateful else ())
    count = positional_count(func, kind.value)
    label = label_of(func)
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


def check_params(params: Mapping[str, str | None] | None, decorator: str, label: str) -> None:
    """Refuse a ``params=`` that is not name -> default (str, None or OPTIONAL)."""
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


def check_aggregate_options(
    label: str, initial: bytes, emit: AggregateEmit | str, window: Window | None
) -> AggregateEmit:
    """Refuse a wrong ``initial=``, ``emit=`` or ``window=``; return the emit mode."""
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
    if window is not None and not isinstance(window, Window):
        raise TypeError(
            f"@aggregate function {label!r}: window= must be dataflare.tumbling(...) or "
            f"dataflare.sliding(...), not {window!r}."
        )
    return emit_value


def check_state(state: object, kind: PluginKind, label: str) -> StateBounds | None:
    """The bounds a ``state=`` option declares; refuses anything but an empty KeyedState."""
    if state is None:
        return None
    if not isinstance(state, KeyedState):
        raise TypeError(
            f"@{kind} function {label!r}: state= must be dataflare.KeyedState(max_entries=..., "
            f"max_bytes=...), not {state!r:.60}."
        )
    if len(state):
        raise TypeError(
            f"@{kind} function {label!r}: state= must be an empty KeyedState: it only "
            "declares the bounds; every running plugin starts with its own, empty or restored."
        )
    return state.bounds
