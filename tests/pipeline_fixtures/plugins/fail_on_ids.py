"""Pass JSON records through; raise ValueError for the ids in param ``bad`` ("2,5")."""

import sdk


@sdk.init(params={"bad": None})
def bad_ids(params: dict[str, str]) -> set[int]:
    return {int(part) for part in params["bad"].split(",")}


@sdk.map
def fail_on_ids(record: sdk.Record, bad: set[int]) -> sdk.Record:
    identifier = record.json()["id"]
    if identifier in bad:
        raise ValueError(f"id {identifier} is on the bad list")
    return record
