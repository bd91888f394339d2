"""The framing decoder's column cutting at its edges: long values and long batches.

The decoder cuts values and keys with one ``struct`` format per 4096 of them,
spelling a value of 4 KiB or more out in its own code; these cases cross both
limits (a batch of 4097 leaves a last chunk of one).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflare import Record
from dataflare.runtime import (
    decode_batch,
    decode_records,
    decode_request,
    encode_request,
    frame_batch,
)


@pytest.mark.parametrize("count", [0, 1, 4095, 4096, 4097, 8193])
def test_batches_across_the_chunk_size_round_trip(count: int) -> None:
    """Every value and key comes back in order, whatever the batch's size."""
    records = [
        Record(b"v%d" % i * (i % 5), key=None if i % 3 else b"k%d" % i, offset=i)
        for i in range(count)
    ]
    assert decode_request(encode_request(records).decode("latin-1")) == records


@given(
    sizes=st.lists(
        st.sampled_from([0, 1, 4095, 4096, 4097, 70_000]) | st.integers(0, 300), max_size=6
    )
)
@settings(max_examples=30)
def test_values_of_any_length_round_trip(sizes: list[int]) -> None:
    """Values shorter and longer than the 4 KiB code table come back byte for byte."""
    values = [bytes([i % 251]) * size for i, size in enumerate(sizes)]
    keys = [value[:5000] or None for value in values]
    batch = decode_batch(frame_batch(list(range(len(values))), values, keys), "test")
    assert batch.values == values
    assert batch.keys == (keys if any(k is not None for k in keys) else None)


def test_outputs_keep_their_input_offsets_across_chunks() -> None:
    """A guest's 5000 outputs decode to records at the offsets of the inputs they came from."""
    inputs = [Record(b"x", offset=100 + i) for i in range(5000)]
    outputs = [Record(b"y%d" % i, metadata={"n": str(i)}) for i in range(5000)]
    framed = frame_batch(
        list(range(5000)),
        [r.value for r in outputs],
        None,
        None,
        [dict(r.metadata) for r in outputs],
    )
    decoded, sources = decode_records(framed, inputs, 5000)
    assert sources == list(range(5000))
    assert [(r.value, dict(r.metadata), r.offset) for r in decoded] == [
        (b"y%d" % i, {"n": str(i)}, 100 + i) for i in range(5000)
    ]
