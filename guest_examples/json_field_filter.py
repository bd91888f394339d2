"""Keep JSON records whose ``field`` equals ``value`` (default: status == "active")."""

import json

import dataflare


@dataflare.filter(params={"field": "status", "value": "active"})
def field_equals(record: dataflare.Record, params: dict[str, str]) -> bool:
    document = json.loads(record.value)
    return isinstance(document, dict) and document.get(params["field"]) == params["value"]
