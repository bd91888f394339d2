"""The one table from the design document's names to the engine's names.

The design writes every stage as ``type: plugin`` with a ``plugin_type`` naming
its family: ``source`` and ``sink`` (with ``plugin_name:`` naming the
connector), or a processor type (``filter``, ``transform``...). The engine runs
plugin *kinds* (``filter``, ``map``, ``filter_map``, ``array_map``,
``aggregate``) and connectors by name. Pipelines may use either vocabulary;
this module is the only place that translates, so the README's table and the
code cannot drift apart.

==================  ==========================  ==========================================
design name         where                       means
==================  ==========================  ==========================================
``source``          ``sources:``, look-back     a source connector, named by ``plugin_name``
``sink``            ``sinks:``, ``dead_letter``  a sink connector, named by ``plugin_name``
``transform``       ``processors:``             a ``map`` plugin (one record per record)
==================  ==========================  ==========================================

Every engine kind is also accepted as written (``filter``, ``map``, ...), and
a connector name alone in ``plugin_type`` (``plugin_type: file``) is the short
form of ``plugin_type: source`` or ``sink`` with ``plugin_name: file``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

from dataflare.runtime import did_you_mean

__all__ = [
    "CONNECTOR_FAMILIES",
    "DESIGN_PROCESSOR_TYPES",
    "PROCESSOR_KINDS",
    "ConnectorRole",
    "PluginKindName",
    "processor_kind",
    "unknown_processor_type",
]

PluginKindName = Literal["filter", "map", "filter_map", "array_map", "aggregate"]
ConnectorRole = Literal["source", "sink"]

PROCESSOR_KINDS: Final[tuple[PluginKindName, ...]] = (
    "filter",
    "map",
    "filter_map",
    "array_map",
    "aggregate",
)
"""The engine's plugin kinds, in the order error messages list them."""

DESIGN_PROCESSOR_TYPES: Final[Mapping[str, PluginKindName]] = {"transform": "map"}
"""Processor ``plugin_type`` names from the design document, and the kind each means."""

CONNECTOR_FAMILIES: Final[Mapping[str, ConnectorRole]] = {"source": "source", "sink": "sink"}
"""``plugin_type`` values that name a connector family (the connector is ``plugin_name``)."""


def processor_kind(plugin_type: str) -> PluginKindName | None:
    """The engine kind a processor's ``plugin_type`` means (None when it means none)."""
    for kind in PROCESSOR_KINDS:
        if plugin_type == kind:
            return kind
    return DESIGN_PROCESSOR_TYPES.get(plugin_type)


def unknown_processor_type(plugin_type: str) -> str:
    """Why ``plugin_type`` is no processor type, and what to write instead."""
    if plugin_type in CONNECTOR_FAMILIES:
        where = "sources:" if plugin_type == "source" else "sinks:"
        return (
            f"is {plugin_type}, which is a connector, not a processor; move this entry under "
            f"{where}, or give a processor type: {', '.join(PROCESSOR_KINDS)} "
            "(or transform, the design's name for map)"
        )
    names = dict.fromkeys([*PROCESSOR_KINDS, *DESIGN_PROCESSOR_TYPES])
    hint = did_you_mean(plugin_type.replace("-", "_"), names)
    return f"{plugin_type!r} is not one of: {', '.join(PROCESSOR_KINDS)}{hint}"
