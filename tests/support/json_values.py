"""Decoded JSON values: written compactly, and compared with ``==`` whatever they hold."""

from __future__ import annotations

import json
import math
from typing import Any


def to_json(document: Any) -> bytes:
    """``document`` as compact UTF-8 JSON, the way the examples write it."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def comparable_json_value(value: Any) -> Any:
    """A decoded JSON value made comparable with ``==``: NaN by its repr (NaN != NaN),
    and each value tagged with its type so 1, 1.0 and True stay apart."""
    if isinstance(value, float):
        return ("float", repr(value) if math.isnan(value) else value)
    if isinstance(value, list):
        return ("list", [comparable_json_value(v) for v in value])
    if isinstance(value, dict):
        return ("dict", [(k, comparable_json_value(v)) for k, v in value.items()])
    return (type(value).__name__, value)
