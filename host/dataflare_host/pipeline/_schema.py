"""A JSON Schema of pipeline files, derived from the classes that parse them.

Editors (VS Code's YAML extension, JetBrains) complete and check keys with it:
``# yaml-language-server: $schema=pipeline.schema.json``. It is generated from
:class:`PipelineConfig` and its parts, so it never drifts from what the loader
accepts; connector ``connection:`` mappings are open objects (each connector
checks its own keys, with located errors).
"""

from __future__ import annotations

import types
import typing
from typing import Any

import attrs

from dataflare_host.pipeline._config import PipelineConfig

__all__ = ["pipeline_schema"]

_SCALARS: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
}


def pipeline_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a pipeline file.

    >>> sorted(pipeline_schema()["required"])
    ['sinks', 'sources']
    """
    definitions: dict[str, Any] = {}
    root = _object(PipelineConfig, definitions)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "DataFlare pipeline",
        **root,
        "$defs": definitions,
    }


def _object(cls: type, definitions: dict[str, Any]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for field in attrs.fields(cls):
        properties[field.name] = _type(hints[field.name], definitions)
        if field.default is attrs.NOTHING:
            required.append(field.name)
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if cls.__doc__:
        schema["description"] = cls.__doc__.strip().splitlines()[0]
    if required:
        schema["required"] = required
    return schema


def _type(tp: Any, definitions: dict[str, Any]) -> dict[str, Any]:
    if tp in _SCALARS:
        return dict(_SCALARS[tp])
    if tp is Any:
        return {}
    if attrs.has(tp):
        name = tp.__name__
        if name not in definitions:
            definitions[name] = {}  # placeholder: a class may refer to itself
            definitions[name] = _object(tp, definitions)
        return {"$ref": f"#/$defs/{name}"}
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_type(arg, definitions) for arg in args]}
    if origin is list:
        return {"type": "array", "items": _type(args[0], definitions)}
    if origin is dict:
        return {"type": "object", "additionalProperties": _type(args[1], definitions)}
    return {}
