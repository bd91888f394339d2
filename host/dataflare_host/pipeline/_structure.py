"""Turning parsed YAML into attrs classes with cattrs, errors pointing at the YAML.

cattrs does the structuring; we make it strict (no extra keys, no ``true`` where
a number belongs, no ``"false"`` read as a true bool) and translate its error
paths (``$.sources[0].config``) into file:line messages.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, TypeVar

import attrs
import cattrs

from dataflare.runtime import did_you_mean
from dataflare_host.pipeline._yaml import LocatedYaml, YamlPath

__all__ = ["structure_at"]

T = TypeVar("T")


def _strict_int(value: Any, _type: type) -> int:
    if type(value) is not int:
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _strict_float(value: Any, _type: type) -> float:
    if type(value) not in (int, float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _strict_bool(value: Any, _type: type) -> bool:
    if type(value) is not bool:
        raise TypeError(f"expected true or false, got {value!r}")
    return value


def _scalar_str(value: Any, _type: type) -> str:
    # Parameters are text (as on a command line); YAML numbers and bools are
    # accepted as their text, but not mappings or lists.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise TypeError(f"expected text, got {type(value).__name__} {value!r}")


def make_converter() -> cattrs.Converter:
    """The strict converter used for pipeline files and connector settings."""
    converter = cattrs.Converter(forbid_extra_keys=True)
    converter.register_structure_hook(int, _strict_int)
    converter.register_structure_hook(float, _strict_float)
    converter.register_structure_hook(bool, _strict_bool)
    converter.register_structure_hook(str, _scalar_str)
    return converter


_CONVERTER = make_converter()
_LITERAL = re.compile(r"^(?P<value>.*) not in literal (?P<type>.*)$")


def _describe(exc: BaseException, _type: Any) -> str:
    """cattrs' message for one leaf error, made to say what was expected."""
    if isinstance(exc, KeyError):
        return "required key missing"
    if isinstance(exc, AttributeError) and "attribute 'keys'" in str(exc):
        return "expected a mapping of settings (key: value lines), got a single value"
    text = str(exc)
    literal = _LITERAL.match(text)
    if literal is not None and _type is not None:
        import typing

        choices = [str(c) for c in typing.get_args(_type)]
        value = literal["value"]
        hint = did_you_mean(value.replace("-", "_"), dict.fromkeys(choices))
        return f"{value!r} is not one of: {', '.join(choices)}{hint}"
    if isinstance(exc, (TypeError, ValueError)) and text:
        return text
    return cattrs.v.format_exception(exc, _type)


_AT = re.compile(r"^(?P<message>.*) @ \$(?P<path>.*)$")
_PART = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]|\['([^']*)'\]")


def _parse_path(text: str) -> YamlPath:
    parts: list[str | int] = []
    for name, index, quoted in _PART.findall(text):
        if index:
            parts.append(int(index))
        else:
            parts.append(name or quoted)
    return tuple(parts)


def structure_at(doc: LocatedYaml, data: Any, cls: type[T], base: Sequence[str | int]) -> T:
    """Structure ``data`` (found at YAML path ``base``) into ``cls``, or raise one error."""
    if attrs.has(cls) and not isinstance(data, dict):
        shown = "nothing" if data is None else f"{type(data).__name__} {data!r:.60}"
        raise doc.error(base, f"expected a mapping of settings, got {shown}")
    try:
        return _CONVERTER.structure(data, cls)
    except (cattrs.BaseValidationError, TypeError, ValueError) as exc:
        messages = (
            cattrs.transform_error(exc, path="$", format_exception=_describe)
            if isinstance(exc, cattrs.BaseValidationError)
            else [f"{_describe(exc, None)} @ $"]
        )
        # A misspelt key shows up twice: as an unknown key and as the key it was
        # meant to be, missing. The unknown one says what to fix.
        extras = [m for m in messages if m.startswith("extra fields found")]
        first = (extras or messages)[0] if messages else str(exc)
        match = _AT.match(first)
        if match is None:
            raise doc.error(base, first) from exc
        path = (*base, *_parse_path(match["path"]))
        message = match["message"]
        extra = re.match(r"extra fields found \((.*)\)", message)
        if extra:
            names = extra[1].split(", ")
            path = (*path, names[0])
            known = ", ".join(sorted(_field_names(cls, _parse_path(match["path"]))))
            fields = _field_names(cls, _parse_path(match["path"]))
            hint = did_you_mean(names[0], dict.fromkeys(fields))
            message = f"unknown key {names[0]!r}{hint}" + (
                f" (known keys: {known})" if known else ""
            )
        raise doc.error(path, message) from exc


def _field_names(cls: type, path: YamlPath) -> list[str]:
    import attrs

    target: Any = cls
    for part in path:
        if not attrs.has(target):
            return []
        if isinstance(part, int):
            continue
        field = attrs.fields_dict(target).get(part)
        if field is None:
            return []
        target = _unwrap(field.type)
    return [f.name for f in attrs.fields(target)] if attrs.has(target) else []


def _unwrap(tp: Any) -> Any:
    import typing

    for arg in (*typing.get_args(tp), tp):
        inner = typing.get_args(arg)
        for candidate in (*inner, arg):
            import attrs

            if isinstance(candidate, type) and attrs.has(candidate):
                return candidate
    return tp
