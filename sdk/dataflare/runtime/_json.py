"""``json.loads`` without its Python wrapper layers: the C scanner called directly.

``json.loads(b)`` detects the encoding, decodes, checks for a BOM, skips
whitespace and only then calls the scanner; for a ~100-byte record those
layers cost about as much as the scan itself (and twice that in the WASM
guest, whose CPython is slower). :func:`loads_json` takes the short way for the
common input (UTF-8 bytes or str, no keyword arguments) and hands everything
else, and every failure, to ``json.loads`` itself: results and errors (type
and message) are the standard library's by construction, and a failure costs
one extra attempt.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, cast

__all__ = ["install_in_json_module", "loads_json"]

_stdlib_loads = json.loads
# The C scanner where _json exists (the guest's CPython has it too).
_scan_once: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
# json.decoder's own WHITESPACE pattern (not in its public names).
# A pattern that matches the empty string never fails: typed so.
_skip_whitespace = cast(
    "Callable[[str, int], re.Match[str]]",
    re.compile(r"[ \t\n\r]*", re.VERBOSE | re.MULTILINE | re.DOTALL).match,
)
_WHITESPACE = frozenset(" \t\n\r")
# A first byte json.loads reads as other than plain UTF-8: a NUL (UTF-16/32
# without BOM) or the first byte of a BOM. Such input takes the full path.
_NOT_PLAIN_UTF8 = frozenset((0x00, 0xEF, 0xFE, 0xFF))


def loads_json(s: str | bytes | bytearray, *args: Any, **kwargs: Any) -> Any:
    """The same value or exception as ``json.loads(s, *args, **kwargs)``, faster.

    >>> loads_json(b' {"a": [1, 2.5, null]} ')
    {'a': [1, 2.5, None]}
    >>> loads_json("[1] x")
    Traceback (most recent call last):
    json.decoder.JSONDecodeError: Extra data: line 1 column 5 (char 4)
    """
    if type(s) is bytes and not (args or kwargs):
        # The usual record: UTF-8 bytes of one object or array, nothing around it.
        # json.loads reads bytes starting with "{" or "[" as UTF-8 unless the
        # second byte is NUL (UTF-16/32), and a NUL there fails the scan: so the
        # first character alone picks this path, with no byte-by-byte checks
        # (they were a quarter of a record's JSON time in the guest).
        try:
            text: str = s.decode("utf-8", "surrogatepass")
            if text[:1] in _OPENERS:
                value, end = _scan_once(text, 0)
                if end == len(text):
                    return value
        except Exception:  # noqa: BLE001 - the general path words the failure
            pass
    return _loads_general(s, args, kwargs)


_OPENERS = frozenset("{[")


def _loads_general(
    s: str | bytes | bytearray, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if args or kwargs:
        return _stdlib_loads(s, *args, **kwargs)
    kind = type(s)
    if kind is bytes:
        # json.loads picks UTF-16/32 from NUL bytes among the first four (or
        # from a BOM): anything that might be one goes the full way.
        if not s or s[0] in _NOT_PLAIN_UTF8 or (len(s) > 1 and not s[1]):
            return _stdlib_loads(s)
    elif kind is not str:
        return _stdlib_loads(s)
    try:
        text: str = s.decode("utf-8", "surrogatepass") if kind is bytes else s  # type: ignore[union-attr,assignment]
        index = _skip_whitespace(text, 0).end() if text and text[0] in _WHITESPACE else 0
        value, end = _scan_once(text, index)
        if end == len(text) or _skip_whitespace(text, end).end() == len(text):
            return value
    except Exception:  # noqa: BLE001 - json.loads below words the same failure
        pass
    # Outside the handler, so the error carries no chained context of ours.
    return _stdlib_loads(s)


def install_in_json_module() -> None:
    """Make ``json.loads`` this fast path in this interpreter (the WASM guest only).

    The guest interpreter runs one plugin and nothing else, and plugins call
    ``json.loads`` directly; :func:`loads_json` returns and raises exactly
    what ``json.loads`` does, so the swap changes speed only. Never called in
    a host process.
    """
    json.loads = loads_json
