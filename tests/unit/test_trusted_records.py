"""Records built column by column (the guest's batch decoder, the file source) equal the
checked constructor's, whatever columns are given, and columns of another length are refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataflare import Record
from dataflare.runtime._trusted_records import build_trusted_records

rows = st.lists(
    st.tuples(
        st.binary(max_size=12),
        st.none() | st.binary(max_size=4),
        st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.integers(min_value=0, max_value=10**12),
    ),
    max_size=8,
)


@given(rows, st.booleans(), st.text(max_size=8))
def test_columns_build_what_the_constructor_builds(
    batch: list[tuple[bytes, bytes | None, int | None, int]], as_lines: bool, file: str
) -> None:
    """Keys and timestamps given or not, metadata as a line column (an empty file name
    too) or as mappings: each record equals the one the checked constructor makes."""
    values = [value for value, _, _, _ in batch]
    keys = [key for _, key, _, _ in batch]
    stamps = [stamp for _, _, stamp, _ in batch]
    lines = [line for _, _, _, line in batch]
    offsets = list(range(len(batch)))
    metadata = [{"file": file, "line": str(line)} for line in lines]
    built = build_trusted_records(
        values,
        keys,
        stamps,
        None if as_lines else metadata,
        offsets,
        None,
        ([file] * len(batch), lines) if as_lines else None,
    )
    expected = [
        Record(value, key, stamp, meta, offset)
        for value, key, stamp, meta, offset in zip(
            values, keys, stamps, metadata, offsets, strict=True
        )
    ]
    assert built == expected
    assert [r.metadata for r in built] == metadata


@pytest.mark.parametrize("short", ["keys", "timestamps", "offsets", "parsed", "lines"])
def test_a_column_of_another_length_is_refused(short: str) -> None:
    columns: dict[str, list[object]] = {
        "keys": [None, None],
        "timestamps": [None, None],
        "offsets": [0, 1],
        "parsed": [{}, {}],
        "lines": [1, 2],
    }
    columns[short] = columns[short][:1]
    with pytest.raises(ValueError, match="a column holds 1 items for 2 records"):
        build_trusted_records(
            [b"{}", b"{}"],
            columns["keys"],  # type: ignore[arg-type]
            columns["timestamps"],  # type: ignore[arg-type]
            None,
            columns["offsets"],  # type: ignore[arg-type]
            columns["parsed"],
            (["f", "f"], columns["lines"]),  # type: ignore[arg-type]
        )
