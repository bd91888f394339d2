"""Upper-case every record's value."""

import sdk


@sdk.map
def uppercase(record: sdk.Record) -> sdk.Record:
    return record.evolve(value=record.value.upper())
