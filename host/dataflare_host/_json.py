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

import re
from typing import Any

import orjson

from dataflare.runtime import loads_json

__all__ = ["parse_json"]

# 2**63 has 19 digits: a shorter integer is exact in orjson, a longer one may not be.
_LONG_DIGITS = re.compile(rb"[0-9]{19}").search
_OrjsonError = orjson.JSONDecodeError


def parse_json(value: bytes) -> Any:
    """``json.loads(value)``'s value, or its exception, for the bytes of one record.

    >>> parse_json(b'{"n": 12345678901234567890, "x": [1.5, null]}')
    {'n': 12345678901234567890, 'x': [1.5, None]}
    """
    if _LONG_DIGITS(value) is None:
        try:
            return orjson.loads(value)
        except _OrjsonError:
            pass
    return loads_json(value)
