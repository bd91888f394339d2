"""A plugin package: the plugin here, a helper module beside it, a declared dependency.

Each record is words; the output is them sorted (by ``sortedcontainers``, a
pure-Python dependency declared in pyproject.toml) and cleaned (``helpers``).
``limit`` is optional without a default: absent, every word is kept.
"""

from sortedcontainers import SortedList

import dataflare

from . import helpers


@dataflare.map(params={"separator": " ", "limit": dataflare.OPTIONAL})
def ranked_words(record: dataflare.Record, params: dict[str, str]) -> dataflare.Record:
    words = SortedList(helpers.clean_words(record.text))
    limit = params.get("limit")
    kept = list(words)[: int(limit)] if limit is not None else list(words)
    return record.evolve(
        value=params["separator"].join(kept),
        metadata={**record.metadata, "limited": str(limit is not None)},
    )
