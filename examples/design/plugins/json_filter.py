"""Keep JSON records whose ``field`` equals ``value`` (the design example's ``json_filter``).

Records whose value is not a JSON object, or lacks the field, are filtered out.
Compared as text, so ``value: "1"`` keeps both ``"1"`` and ``1``.
"""

import json

import dataflare


@dataflare.filter(params={"field": "status", "value": "active"})
def json_filter(record: dataflare.Record, params: dict[str, str]) -> bool:
    try:
        document = record.json()
    except ValueError:
        return False
    if not isinstance(document, dict) or params["field"] not in document:
        return False
    found = document[params["field"]]
    return (found if isinstance(found, str) else json.dumps(found)) == params["value"]
