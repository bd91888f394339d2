"""Keep even integers, doubled; drop odd ones. A value that is not an integer is an error."""

import dataflare


@dataflare.filter_map
def even_doubled(record: dataflare.Record) -> dataflare.Record | None:
    number = int(record.value)
    if number % 2:
        return None
    return record.evolve(value=str(number * 2))
