"""Tag each JSON event "high" or "standard" by its amount (param ``threshold``)."""

import json

import dataflare


@dataflare.init(params={"threshold": "100"})
def parse_threshold(params: dict[str, str]) -> float:
    return float(params["threshold"])


@dataflare.map
def tag_high_value(record: dataflare.Record, threshold: float) -> dataflare.Record:
    event = record.json()
    event["tier"] = "high" if event["amount"] >= threshold else "standard"
    return record.evolve(value=json.dumps(event, separators=(",", ":")))
