"""Keep the first record of each key and drop the later ones (a record without a key is
known by its value).

What it kept lives in its ``KeyedState``, which a pipeline checkpoints with the
source positions: after a restart, natively or as WASM, a key seen before is
still dropped. It remembers the 100,000 keys it kept most recently.
"""

import dataflare


@dataflare.filter(state=dataflare.KeyedState(max_entries=100_000))
def dedupe(record: dataflare.Record, seen: dataflare.KeyedState) -> bool:
    # The prefix keeps a key and a keyless record's value of the same bytes apart.
    name = b"k" + record.key if record.key is not None else b"v" + record.value
    if name in seen:
        return False
    seen[name] = b""
    return True
