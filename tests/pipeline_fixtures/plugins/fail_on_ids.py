"""Pass JSON records through; raise ValueError for the ids in param ``bad`` ("2,5")."""

import dataflare


@dataflare.init(params={"bad": None})
def bad_ids(params: dict[str, str]) -> set[int]:
    return {int(part) for part in params["bad"].split(",")}


@dataflare.map
def fail_on_ids(record: dataflare.Record, bad: set[int]) -> dataflare.Record:
    identifier = record.json()["id"]
    if identifier in bad:
        raise ValueError(f"id {identifier} is on the bad list")
    return record
