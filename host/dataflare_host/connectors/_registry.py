"""Connectors by name: the built-ins and whatever third parties register.

A third-party package adds a connector with an entry point in its pyproject:

.. code-block:: toml

    [project.entry-points."dataflare.sources"]
    kafka = "dataflare_kafka:KafkaSource"

The built-in connectors are registered exactly so, by this project's own
pyproject, and a pipeline's ``plugin_path:`` file goes through the same checks
(:mod:`._loader`): one mechanism for every connector. The built-ins are also
known here by name (:data:`BUILT_IN`, the same table, kept equal by a test), so
a pipeline of built-in connectors never scans the environment's entry points:
the scan (``importlib.metadata``) happens on the first name that is not one.

Registries are objects, not module globals, so two hosts in one process (or
two tests) never see each other's registrations.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from dataflare import ConfigurationError

from ._base import Sink, Source
from ._loader import Role, connector_class, load_connector_file

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

__all__ = ["BUILT_IN", "SINK_GROUP", "SOURCE_GROUP", "ConnectorRegistry"]

SOURCE_GROUP = "dataflare.sources"
"""Entry point group where packages register source connectors."""
SINK_GROUP = "dataflare.sinks"
"""Entry point group where packages register sink connectors."""

BUILT_IN: dict[str, dict[str, str]] = {
    SOURCE_GROUP: {
        "file": "dataflare_host.connectors:FileSource",
        "stdin": "dataflare_host.connectors:StdinSource",
        "generator": "dataflare_host.connectors:GeneratorSource",
        "postgres": "dataflare_host.connectors._postgres_source:PostgresSource",
        "redis": "dataflare_host.connectors._redis:RedisSource",
        "kafka": "dataflare_host.connectors._kafka_source:KafkaSource",
    },
    SINK_GROUP: {
        "file": "dataflare_host.connectors:FileSink",
        "stdout": "dataflare_host.connectors:StdoutSink",
        "postgres": "dataflare_host.connectors._postgres_sink:PostgresSink",
        "redis": "dataflare_host.connectors._redis:RedisSink",
        "elasticsearch": "dataflare_host.connectors._elasticsearch:ElasticsearchSink",
        "kafka": "dataflare_host.connectors._kafka_sink:KafkaSink",
    },
}
"""The built-in connectors' entry points (``module:attribute``), as pyproject declares them."""


@attrs.frozen
class _BuiltIn:
    # A built-in connector not loaded yet: what an EntryPoint is, without
    # importlib.metadata (its import alone is a noticeable part of start-up).
    name: str
    value: str

    def load(self) -> object:
        module, _, attribute = self.value.partition(":")
        return getattr(importlib.import_module(module), attribute)




class ConnectorRegistry:
    """Source and sink classes by the name pipelines give in ``plugin_name`` (or ``plugin_type``).

    Entry points are loaded only when a pipeline names them, so one broken
    third-party connector does not break pipelines that do not use it.
    """

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, EntryPoint | _BuiltIn | type[Source] | type[Sink]]] = {
            SOURCE_GROUP: {},
            SINK_GROUP: {},
        }
        self._scan_pending = False

    @classmethod
    def from_entry_points(cls) -> ConnectorRegistry:
        """A registry of every connector installed in this environment.

        The built-ins are there at once; the environment's entry points are
        scanned on the first name that is not a built-in (or a listing).
        """
        registry = cls()
        for group, table in registry._entries.items():
            for name, value in BUILT_IN[group].items():
                table[name] = _BuiltIn(name, value)
        registry._scan_pending = True
        return registry

    def _scan(self) -> None:
        if not self._scan_pending:
            return
        self._scan_pending = False
        from importlib.metadata import entry_points  # only when a name needs it

        for group, table in self._entries.items():
            for point in entry_points(group=group):
                # A built-in keeps its name; registrations made in code keep theirs.
                if point.name not in table:
                    table[point.name] = point

    def register_source(self, name: str, source: type[Source]) -> None:
        """Make ``source`` available as ``plugin_name: name`` under ``sources:``."""
        self._entries[SOURCE_GROUP][name] = connector_class(source, "source", f"source {name!r}")

    def register_sink(self, name: str, sink: type[Sink]) -> None:
        """Make ``sink`` available as ``plugin_name: name`` under ``sinks:``."""
        self._entries[SINK_GROUP][name] = connector_class(sink, "sink", f"sink {name!r}")

    def source_names(self) -> list[str]:
        """Names of every registered source."""
        self._scan()
        return sorted(self._entries[SOURCE_GROUP])

    def sink_names(self) -> list[str]:
        """Names of every registered sink."""
        self._scan()
        return sorted(self._entries[SINK_GROUP])

    def source(self, name: str) -> type[Source] | None:
        """The source class registered as ``name`` (None if there is none)."""
        return self._lookup(SOURCE_GROUP, name)  # type: ignore[return-value]

    def sink(self, name: str) -> type[Sink] | None:
        """The sink class registered as ``name`` (None if there is none)."""
        return self._lookup(SINK_GROUP, name)  # type: ignore[return-value]

    def from_file(self, role: Role, path: Path) -> type[Source] | type[Sink]:
        """The ``role`` class the plugin file ``path`` defines (``plugin_path:``).

        Checked exactly like an entry point's class; a file is imported again
        on every call, so an edited plugin is picked up by the next run.
        """
        return load_connector_file(path, role)  # type: ignore[no-any-return]

    def _lookup(self, group: str, name: str) -> type[Source] | type[Sink] | None:
        if name not in self._entries[group]:
            self._scan()
        entry = self._entries[group].get(name)
        if entry is None or isinstance(entry, type):
            return entry
        try:
            loaded = entry.load()
        except Exception as exc:  # whatever a broken package raises, name the package
            raise ConfigurationError(
                f"connector {name!r} ({entry.value}, entry point group {group}) failed to "
                f"load: {type(exc).__name__}: {exc}"
            ) from exc
        role: Role = "source" if group == SOURCE_GROUP else "sink"
        # An entry point may name the class or the module defining it (a plugin file
        # turned into a package); the same check as for a plugin_path file.
        checked = connector_class(loaded, role, f"connector {name!r} ({entry.value})")
        self._entries[group][name] = checked
        return checked  # type: ignore[no-any-return]
