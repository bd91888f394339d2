"""Per-key accumulators of partitioned aggregates, as the checkpoint stores them.

Each partitioned aggregate's keys are saved as one msgpack map under
``<stage id>#by_key`` beside the ordinary accumulators, so the checkpoint does
not depend on the worker count: a restart with another ``workers:`` re-hashes.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgpack

__all__ = ["BY_KEY_SUFFIX", "dump_keyed", "load_keyed"]

BY_KEY_SUFFIX = "#by_key"


def dump_keyed(keyed: Mapping[str, Mapping[bytes | None, bytes | None]]) -> dict[str, bytes]:
    """Checkpoint entries for every partitioned aggregate's per-key state."""
    return {
        stage + BY_KEY_SUFFIX: msgpack.packb([[k, v] for k, v in states.items()])
        for stage, states in keyed.items()
    }


def load_keyed(
    saved: Mapping[str, bytes | None], stages: list[str]
) -> dict[str, dict[bytes | None, bytes | None]]:
    """The per-key state of ``stages`` from checkpoint entries (empty for a new stage)."""
    keyed: dict[str, dict[bytes | None, bytes | None]] = {}
    for stage in stages:
        blob = saved.get(stage + BY_KEY_SUFFIX)
        pairs = msgpack.unpackb(blob) if blob else []
        keyed[stage] = dict(pairs)
    return keyed
