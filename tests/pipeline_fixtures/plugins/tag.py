"""Add ``"tag": <param tag>`` to each JSON record."""

import json

import sdk


@sdk.map(params={"tag": "tagged"})
def tag(record: sdk.Record, params: dict[str, str]) -> sdk.Record:
    document = record.json()
    document["tag"] = params["tag"]
    return record.evolve(value=json.dumps(document, separators=(",", ":")))
