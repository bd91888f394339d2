"""The cyclic garbage collector paced per batches while a pipeline runs (see
:func:`collect_per_batches`)."""

from __future__ import annotations

import gc
from collections.abc import Callable

__all__ = ["collect_per_batches"]

_MAX_GC_THRESHOLD = 100_000


def collect_per_batches(batch_size: int) -> Callable[[], None]:
    """While batches flow, run the cyclic garbage collector per few batches, not per
    few hundred records.

    A batch's records are tracked objects (two per record) that live until every
    sink took them. At the default threshold (a collection every 700 allocations
    not yet freed) a 1,000-record batch sets off several collections, each
    walking records that are all still in use and promoting them, so they are
    walked again in older generations: about a tenth of a native pipeline's time.
    A threshold above what a few batches in flight hold makes a collection rare
    while batches are freed as they go, and still collects what plugins leave in
    reference cycles. The returned function puts the previous threshold back
    (unless someone else changed it meanwhile).
    """
    previous = gc.get_threshold()
    wanted = max(previous[0], min(_MAX_GC_THRESHOLD, 16 * batch_size))
    gc.set_threshold(wanted, *previous[1:])

    def restore() -> None:
        if gc.get_threshold()[0] == wanted:
            gc.set_threshold(*previous)

    return restore
