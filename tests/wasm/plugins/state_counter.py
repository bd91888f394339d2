"""A stateful filter_map for the parity tests: counts records per key in a small state.

The state holds at most 4 entries and 40 bytes, so short batches evict by both
bounds. Per record (key ``-`` when it has none): value ``del`` deletes the key's
count and drops the record; ``huge`` first writes an entry past ``max_bytes``
(a ValueError); ``boom`` writes the new count, then raises; anything else writes
the new count and emits it, with the state's keys (hex, oldest first) in
metadata ``keys``.
"""

import dataflare


@dataflare.filter_map(state=dataflare.KeyedState(max_entries=4, max_bytes=40))
def count(record: dataflare.Record, state: dataflare.KeyedState) -> dataflare.Record | None:
    key = record.key if record.key is not None else b"-"
    if record.value == b"del":
        state.pop(key, None)
        return None
    if record.value == b"huge":
        state[key] = b"x" * 64
    total = int(state.get(key) or b"0") + 1
    state[key] = str(total).encode()
    if record.value == b"boom":
        raise ValueError(f"boom after writing {total}")
    return record.evolve(value=str(total), metadata={"keys": ",".join(k.hex() for k in state)})
