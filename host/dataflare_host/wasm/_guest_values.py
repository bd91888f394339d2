"""Values lifted from an untrusted guest: checked before the host uses them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
from dataflare import ConfigurationError, PluginError, SerializationError

__all__ = ["PluginInfo", "call_error", "guest_field"]


@attrs.frozen
class PluginInfo:
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
    def from_wit(cls, raw: Any) -> PluginInfo:
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


def guest_field(raw: Any, name: str, kind: type) -> Any:
    value = getattr(raw, name, None)
    if not isinstance(value, kind):
        raise SerializationError(f"guest output field {name!r} is missing or not {kind.__name__}")
    return value


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


