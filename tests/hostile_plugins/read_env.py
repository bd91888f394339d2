"""Hostile: reads the host's DATAFLARE_SECRET variable on a record whose value is b"attack"."""

import os

import sdk


@sdk.map
def snoop(record: sdk.Record) -> sdk.Record:
    if record.value == b"attack":
        return record.evolve(value=os.environ["DATAFLARE_SECRET"])
    return record
