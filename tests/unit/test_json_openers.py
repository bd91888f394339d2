"""``loads_json``'s shortest path, taken on the first character alone, agrees with ``json.loads``.

Bytes starting with ``{`` or ``[`` skip the encoding checks: json.loads would
read them as UTF-16/32 when the second byte is NUL, which this path relies on
failing its scan. These cases aim at that edge; the general properties are in
``test_shortcuts_agree.py``.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st
from support.json_values import comparable_json_value

from dataflare.runtime import loads_json


def _outcome(value: bytes) -> tuple[tuple[str, Any], tuple[str, Any]]:
    outcomes = []
    for call in (loads_json, json.loads):
        try:
            result = call(value)
        except Exception as exc:  # noqa: BLE001 - comparing whatever both raise
            outcomes.append(("raised", (type(exc), str(exc))))
        else:
            outcomes.append(("returned", comparable_json_value(result)))
    return outcomes[0], outcomes[1]


_tails = st.binary(max_size=30) | st.lists(
    st.sampled_from([b"\x00", b"}", b"]", b'"', b"1", b" ", b"\n", b"\xed\xa0\x80", b"\xff"]),
    max_size=8,
).map(b"".join)


@given(opener=st.sampled_from([b"{", b"["]), tail=_tails)
@example(opener=b"{", tail=b"\x00")
@example(opener=b"[", tail=b"\x00\x00\x00")
@example(opener=b"[", tail=b"\x001\x00]\x00")
@example(opener=b"{", tail=b"\x00}\x00")
@example(opener=b"[", tail=b"]\n")
@example(opener=b"{", tail=b"}  ")
@example(opener=b"[", tail=b'"\xed\xa0\x80"]')
@example(opener=b"[", tail=b"1] x")
@example(opener=b"[", tail=b"NaN]")
def test_bytes_opening_an_object_or_array_load_as_json_loads_does(
    opener: bytes, tail: bytes
) -> None:
    """Same value, or same exception type and message, whatever follows the opener."""
    fast, slow = _outcome(opener + tail)
    assert fast == slow


@given(
    value=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=4), children, max_size=3)
        ),
        max_leaves=8,
    ),
    ascii_only=st.booleans(),
)
def test_records_of_json_containers_load_as_json_loads_does(value: Any, ascii_only: bool) -> None:
    """Every JSON list or object, as a record's UTF-8 value, loads to the same value."""
    data = json.dumps([value, {"v": value}], ensure_ascii=ascii_only).encode()
    fast, slow = _outcome(data)
    assert fast == slow
