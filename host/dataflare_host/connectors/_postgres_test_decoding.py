"""Parsing the changes PostgreSQL's ``test_decoding`` output plugin prints.

Column values become JSON values where the type says how (integers, floats,
booleans, NULL); everything else, exact numerics included, stays text.
"""

from __future__ import annotations

import math
import re
from typing import Any

from dataflare import PluginIOError

__all__ = ["parse_change"]


# test_decoding prints a change as
#   table public.items: UPDATE: old-key: id[integer]:1 new-tuple: id[integer]:2 name[text]:'x'
_CHANGE = re.compile(
    r"table (?P<table>.+?): (?P<op>INSERT|UPDATE|DELETE|TRUNCATE):(?P<rest>.*)$", re.DOTALL
)
_COLUMN = re.compile(
    r"""\s*(?P<name>"(?:[^"]|"")*"|[^\s\[]+)\[(?P<type>.*?)\]:(?P<value>'(?:[^']|'')*'|\S+)""",
    re.DOTALL,
)
_INT_TYPES = {"smallint", "integer", "bigint", "oid"}
_FLOAT_TYPES = {"real", "double precision"}


def _parse_columns(text: str) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for match in _COLUMN.finditer(text):
        name = match["name"]
        if name.startswith('"'):
            name = name[1:-1].replace('""', '"')
        kind, raw = match["type"], match["value"]
        value: Any
        if raw == "null":
            value = None
        elif raw.startswith("'"):
            value = raw[1:-1].replace("''", "'")
        elif kind in _INT_TYPES:
            value = int(raw)
        elif kind in _FLOAT_TYPES:
            number = float(raw)
            value = number if math.isfinite(number) else raw
        elif kind == "boolean":
            value = raw == "true"
        else:  # numeric (kept exact, as text), bit strings, unchanged-toast-datum
            value = raw
        row[name] = value
    return row


def parse_change(text: str) -> tuple[str, str, dict[str, Any], dict[str, Any] | None]:
    """A change as ``test_decoding`` prints it: its table, operation (lower case), row and,
    for an update that changed the key, the old key's columns (else None)."""
    match = _CHANGE.match(text)
    if match is None:
        raise PluginIOError(f"postgres source: cannot parse a decoded change: {text[:200]!r}")
    rest = match["rest"]
    old = None
    if "old-key:" in rest and " new-tuple:" in rest:
        old_text, _, rest = rest.partition(" new-tuple:")
        old = _parse_columns(old_text.replace("old-key:", "", 1))
    return match["table"], match["op"].lower(), _parse_columns(rest), old
