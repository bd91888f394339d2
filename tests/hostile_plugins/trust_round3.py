"""Issue 24's third trust round, in one component: on a record whose value names an
attack it does that harm; every other record passes through.

- ``huge_error``: raises a 5 MB message; ``huge_init`` (param) fails ``@init`` with one;
- ``flood``: prints 2,000 lines of 64 KiB in one call;
- ``work``: spends ``work`` (param) loop iterations of CPU, then passes the record on;
- ``loop``: never returns.
"""

import sys

import dataflare

HUGE = 5_000_000


@dataflare.init(params={"fail_init": "no", "work": "0"})
def setup(params: dict[str, str]) -> int:
    if params["fail_init"] == "yes":
        raise dataflare.ConfigurationError("init refused: " + "x" * HUGE)
    return int(params["work"])


@dataflare.map
def trust_round3(record: dataflare.Record, work: int) -> dataflare.Record:
    attack = record.value
    if attack == b"huge_error":
        raise ValueError("head of a huge message " + "x" * HUGE)
    if attack == b"flood":
        line = "y" * (64 * 1024)
        for _ in range(2000):
            print(line)
        sys.stdout.flush()
    elif attack == b"work":
        total = 0
        for i in range(work):
            total += i * i % 7
        return record.evolve(value=str(total).encode())
    elif attack == b"loop":
        while True:
            pass
    return record
