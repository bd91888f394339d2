"""Progress lines for long waits (building, compiling, loading), on terminals and pipes alike.

A wait that ends quickly says nothing. One that lasts says what it is doing after
a second and then every two seconds, and how long it took when it ends, on the
``dataflare.progress`` logger, which the CLI prints as plain lines on stderr: a
piped ``dataflare run`` is never silent for long.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["FIRST_NOTICE_S", "NOTICE_EVERY_S", "waiting"]

log = logging.getLogger("dataflare.progress")

FIRST_NOTICE_S = 1.0
"""How long a wait goes unannounced."""
NOTICE_EVERY_S = 2.0
"""How often a long wait says it is still going."""


@contextmanager
def waiting(what: str, estimate_s: float | None = None) -> Iterator[None]:
    """Announce ``what`` (e.g. ``building x.py``) if it takes more than a second.

    ``estimate_s``, how long the same step took last time, is shown beside the
    seconds counter, so a wait says what to expect.

    >>> with waiting("nothing much", estimate_s=3.0):
    ...     pass
    """
    started = time.monotonic()
    expect = f" (about {estimate_s:.0f} s last time)" if estimate_s is not None else ""
    done = threading.Event()
    announced = threading.Event()

    def notices() -> None:
        if done.wait(FIRST_NOTICE_S):
            return
        announced.set()
        log.info("%s ...%s", what, expect)
        while not done.wait(NOTICE_EVERY_S):
            log.info("%s ... %.0f s%s", what, time.monotonic() - started, expect)

    ticker = threading.Thread(target=notices, name="dataflare-waiting", daemon=True)
    ticker.start()
    try:
        yield
    finally:
        done.set()
        ticker.join()
        if announced.is_set():
            log.info("%s: %.1f s", what, time.monotonic() - started)
