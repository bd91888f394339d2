"""A stateful filter: keeps a record whose integer value exceeds every one kept before.

The highest value so far lives in the plugin's ``@init`` context; a record that is
not an integer raises. After that failure the state must survive, in both runtimes.
"""

import dataflare


@dataflare.init
def state(params: dict[str, str]) -> dict[str, int]:
    return {"highest": -(10**9)}


@dataflare.filter
def rising(record: dataflare.Record, context: dict[str, int]) -> bool:
    value = int(record.value)  # ValueError on a bad record
    if value > context["highest"]:
        context["highest"] = value
        return True
    return False
