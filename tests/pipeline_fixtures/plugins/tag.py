"""Add ``"tag": <param tag>`` to each JSON record."""

import json

import dataflare


@dataflare.map(params={"tag": "tagged"})
def tag(record: dataflare.Record, params: dict[str, str]) -> dataflare.Record:
    document = record.json()
    document["tag"] = params["tag"]
    return record.evolve(value=json.dumps(document, separators=(",", ":")))
