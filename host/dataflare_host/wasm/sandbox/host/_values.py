"""Values lifted from an untrusted guest: checked before the host uses them."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import attrs

from dataflare import ConfigurationError, PluginError, PluginKind, SerializationError
from dataflare.runtime import StateBounds

__all__ = [
    "MAX_OUTPUTS_PER_CALL",
    "PluginInfo",
    "call_error",
    "check_sources",
    "guest_consumed",
    "guest_field",
    "guest_text",
    "shim_ran_out_of_memory",
]

MAX_OUTPUTS_PER_CALL = 1_000_000
"""Most records one call of an array_map component may return."""


_MAX_NAME = 256


@attrs.frozen
class PluginInfo:
    """What a component says about its plugin (``describe``), checked field by field."""

    name: str
    kind: PluginKind
    initial: bytes
    emit: str
    params: dict[str, str | None] | None
    sdk_version: str
    origin: str
    has_look_back: bool
    window: str | None
    state: StateBounds | None = None
    parsed_json: bool = False

    @classmethod
    def from_wit(cls, raw: Any, path: Path) -> PluginInfo:
        """The checked plugin-info; ConfigurationError naming ``path`` when it is malformed."""
        try:
            params = None
            raw_params = getattr(raw, "params", None)
            if raw_params is not None:
                params = {
                    _text(getattr(p, "name", None), "a parameter name"): _optional_text(
                        getattr(p, "default", None), "a parameter default"
                    )
                    for p in _listed(raw_params, "params")
                }
            kind = PluginKind(_enum_name(getattr(raw, "kind", None)).replace("-", "_"))
            emit = _enum_name(getattr(raw, "emit", None))
            if emit not in ("each", "batch"):
                raise ValueError(f"emit {emit!r} is neither each nor batch")
            initial = _text(getattr(raw, "initial", None), "initial").encode("latin-1")
            return cls(
                name=_text(getattr(raw, "name", None), "name", limit=_MAX_NAME),
                kind=kind,
                initial=initial,
                emit=emit,
                params=params,
                sdk_version=_text(getattr(raw, "sdk-version", None), "sdk-version"),
                origin=_text(getattr(raw, "origin", None), "origin"),
                has_look_back=_flag(getattr(raw, "has-look-back", None)),
                window=_optional_text(getattr(raw, "window", None), "window"),
                state=_state_decl(getattr(raw, "state", None), kind),
                parsed_json=_flag(getattr(raw, "parsed-json", None)),
            )
        except (TypeError, ValueError, UnicodeError) as exc:
            raise ConfigurationError(
                f"{path}: its describe export returned a malformed plugin-info ({exc}); "
                "is it a DataFlare plugin component built with dataflare build?"
            ) from exc


_MAX_U32 = (1 << 32) - 1


def _state_decl(raw: Any, kind: PluginKind) -> StateBounds | None:
    """A declared state's bounds: whole numbers from 1, and never on an aggregate."""
    if raw is None:
        return None
    if kind is PluginKind.AGGREGATE:
        raise ValueError("an aggregate declares state (its accumulator is its state)")
    bounds = []
    for field in ("max-entries", "max-bytes"):
        value = getattr(raw, field, None)
        if type(value) is not int or not 1 <= value <= _MAX_U32:
            raise ValueError(f"state {field} is {value!r}, not a whole number from 1")
        bounds.append(value)
    return StateBounds(*bounds)


def _text(value: Any, what: str, *, limit: int | None = None) -> str:
    if type(value) is not str:
        raise TypeError(f"{what} is {type(value).__name__}, not text")
    if limit is not None and len(value) > limit:
        raise ValueError(f"{what} is longer than {limit} characters")
    return value


def _optional_text(value: Any, what: str) -> str | None:
    return None if value is None else _text(value, what)


def _flag(value: Any) -> bool:
    if type(value) is not bool:
        raise TypeError(f"has-look-back is {type(value).__name__}, not a bool")
    return value


def _listed(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"{what} is {type(value).__name__}, not a list")
    return value


def _enum_name(value: Any) -> str:
    return _text(value.value if hasattr(value, "value") else value, "an enum value")


def guest_text(raw: Any, name: str) -> str | bytes:
    """A framing field of a guest's output: Latin-1 text, or the bytes the sandbox
    process already turned it into (the decoders take either)."""
    value = getattr(raw, name, None)
    if not isinstance(value, (str, bytes)):
        raise SerializationError(f"guest output field {name!r} is missing or not text")
    return value


def guest_field(raw: Any, name: str, kind: type) -> Any:
    value = getattr(raw, name, None)
    if not isinstance(value, kind):
        raise SerializationError(f"guest output field {name!r} is missing or not {kind.__name__}")
    return value


def guest_consumed(raw: Any, count: int, path: Path, call: str) -> int:
    """The ``consumed`` field of a guest's output for a batch of ``count`` records.

    The host indexes the batch with it, so a value outside ``0..count`` is a
    broken (or hostile) guest; ``call`` names the export in the message.
    """
    consumed: int = guest_field(raw, "consumed", int)
    if not 0 <= consumed <= count:
        raise SerializationError(f"{path}: {call} reported {consumed} consumed of {count}")
    return consumed


def call_error(outcome: Any, path: Path) -> PluginError:
    tag = getattr(outcome, "tag", None)
    payload = str(getattr(outcome, "payload", ""))
    if tag == "configuration":
        return ConfigurationError(f"{path}: {payload}")
    if tag == "serialization":
        return SerializationError(f"{path}: {payload}")
    if tag == "unsupported":
        return ConfigurationError(f"{path}: {payload}")
    return PluginError(f"{path}: the component's shim failed: {payload}")




def shim_ran_out_of_memory(outcome: Any) -> bool:
    """Whether a call failed inside the guest shim because the memory cap was hit."""
    return getattr(outcome, "tag", None) == "internal" and "MemoryError" in str(
        getattr(outcome, "payload", "")
    )


def check_sources(kind: PluginKind, sources: list[int], consumed: int, path: Path) -> None:
    """Refuse outputs a plugin of ``kind`` cannot have produced from ``consumed`` inputs.

    A map makes exactly one record per input and a filter_map at most one; any
    kind at most :data:`MAX_OUTPUTS_PER_CALL` in all (a windowed aggregate may
    close several windows on one record). A component that claims otherwise is
    malformed or hostile (two inputs must not become millions of records).
    """
    if kind is PluginKind.MAP and sources != list(range(consumed)):
        raise SerializationError(
            f"{path}: a map must return exactly one record per input; the guest returned "
            f"{len(sources)} for {consumed}"
        )
    if kind is PluginKind.FILTER_MAP and any(
        b <= a for a, b in itertools.pairwise(sources)
    ):
        raise SerializationError(
            f"{path}: a filter_map returns at most one record per input; the guest returned "
            f"{len(sources)} for {consumed}"
        )
    if len(sources) > MAX_OUTPUTS_PER_CALL:
        raise SerializationError(
            f"{path}: the guest returned {len(sources):,} records for {consumed} inputs, more "
            f"than the {MAX_OUTPUTS_PER_CALL:,} one call may return"
        )
