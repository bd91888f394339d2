"""Tag each JSON event "high" or "standard" by its amount (param ``threshold``)."""

import json

import sdk


@sdk.init(params={"threshold": "100"})
def parse_threshold(params: dict[str, str]) -> float:
    return float(params["threshold"])


@sdk.map
def tag_high_value(record: sdk.Record, threshold: float) -> sdk.Record:
    event = record.json()
    event["tier"] = "high" if event["amount"] >= threshold else "standard"
    return record.evolve(value=json.dumps(event, separators=(",", ":")))
