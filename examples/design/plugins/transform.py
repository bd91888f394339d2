"""Reshape JSON rows into documents of a named schema (the design example's ``transform``).

Params: ``format`` (only ``json``) and ``schema``, one of :data:`SCHEMAS`. Each
schema lists the output fields and where each comes from; ``user_schema`` also
lower-cases the e-mail address. The output carries ``"schema": <name>``. A row
missing a field fails the record (the pipeline's ``on_error`` decides).
Runs natively or built into a WASM component (only ``json`` is imported).
"""

import json

import dataflare

SCHEMAS = {
    "user_schema": {"user_id": "id", "name": "name", "email": "email", "status": "status"},
}


@dataflare.init(params={"format": "json", "schema": "user_schema"})
def choose_schema(params: dict[str, str]) -> tuple[str, dict[str, str]]:
    if params["format"] != "json":
        raise ValueError(f"format {params['format']!r} is not supported; use json")
    if params["schema"] not in SCHEMAS:
        raise ValueError(f"unknown schema {params['schema']!r}; known: {', '.join(SCHEMAS)}")
    return params["schema"], SCHEMAS[params["schema"]]


@dataflare.map
def transform(record: dataflare.Record, schema: tuple[str, dict[str, str]]) -> dataflare.Record:
    name, fields = schema
    row = record.json()
    document = {target: row[source] for target, source in fields.items()}
    if name == "user_schema":
        document["email"] = str(document["email"]).lower()
    document["schema"] = name
    return record.evolve(value=json.dumps(document, separators=(",", ":"), sort_keys=True))
