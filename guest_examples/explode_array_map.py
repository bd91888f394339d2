"""Explode a JSON array into one record per element (each element as compact JSON)."""

import json

import dataflare


@dataflare.array_map
def explode(record: dataflare.Record) -> list[dataflare.Record]:
    items = record.json()
    if not isinstance(items, list):
        raise ValueError(f"expected a JSON array, got {type(items).__name__}")
    return [
        record.evolve(value=json.dumps(item, separators=(",", ":"), ensure_ascii=False))
        for item in items
    ]
