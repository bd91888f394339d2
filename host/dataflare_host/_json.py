"""The host's JSON parse of records: orjson where it returns what ``json.loads`` returns.

A JSONL source parses every line to check it, and keeps the parse for the
record's first ``json()``: in the host process that parse can use orjson (a
compiled parser, about three times the standard library's speed on a short
line). orjson differs from ``json.loads`` in a few places, each of which goes
to the SDK's :func:`~dataflare.runtime.loads_json` (the standard library's
results and errors) instead: any failure (NaN and Infinity, lone surrogates, a
byte-order mark, invalid UTF-8, nesting past its limit, numbers out of range)
and any run of 19 or more digits, since orjson reads an integer past 64 bits as
a float. The WASM guest cannot load a compiled module: its runtime keeps the
pure-Python path, with the same results.
"""

from __future__ import annotations

from typing import Any

import orjson

from dataflare.runtime import loads_json

__all__ = ["parse_json", "parse_json_lines"]

# 2**63 has 19 digits: a shorter integer is exact in orjson, a longer one may not be.
# Found as a run of 19 "1"s once every ASCII digit reads "1" and every other byte
# "0": a table lookup and a substring search, several times cheaper than a regex.
_DIGITS = bytes(0x31 if 0x30 <= byte <= 0x39 else 0x30 for byte in range(256))
_LONG_RUN = b"1" * 19
_OrjsonError = orjson.JSONDecodeError


def parse_json(value: bytes) -> Any:
    """``json.loads(value)``'s value, or its exception, for the bytes of one record.

    >>> parse_json(b'{"n": 12345678901234567890, "x": [1.5, null]}')
    {'n': 12345678901234567890, 'x': [1.5, None]}
    """
    if _LONG_RUN not in value.translate(_DIGITS):
        try:
            return orjson.loads(value)
        except _OrjsonError:
            pass
    return loads_json(value)


def parse_json_lines(values: list[bytes]) -> list[Any]:
    """``[parse_json(v) for v in values]``, or the first failing value's exception.

    The check for long digit runs is made once over the whole batch (a newline
    between values ends any run): most batches then go to orjson in one map.
    """
    if _LONG_RUN not in b"\n".join(values).translate(_DIGITS):
        try:
            return list(map(orjson.loads, values))
        except _OrjsonError:
            pass  # value by value: the failing one gets loads_json's own error
    return list(map(parse_json, values))
