"""Upper-case every record's value."""

import dataflare


@dataflare.map
def uppercase(record: dataflare.Record) -> dataflare.Record:
    return record.evolve(value=record.value.upper())
