"""The docs' connector reference matches the connectors: every key, its type, its default.

Each connector declares what its ``connection:`` accepts as the fields of its
``Config`` attrs class (the pipeline structures the mapping into it and refuses
any other key), and every entry's own keys are :class:`ConnectorConfig`'s fields.
These tests read both from the code and compare them with the tables of
``docs/connectors.md``,
in both directions: a key added, renamed, retyped or given another default
without the page following fails here, and so does a documented key that no
longer exists.
"""

from __future__ import annotations

import re
import types
import typing
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import attrs
import pytest

from dataflare_host.connectors import ConnectorRegistry
from dataflare_host.connectors._registry import SINK_GROUP, SOURCE_GROUP
from dataflare_host.pipeline._config import ConnectorConfig

REFERENCE = Path(__file__).parents[2] / "docs" / "connectors.md"

# Set by the pipeline, not by the class: a connector whose Config has ``base_dir`` gets
# the pipeline file's folder unless the YAML gives one (pipeline/_assemble.py).
INJECTED_DEFAULTS = {"base_dir": "the pipeline file's folder"}


def reference_sections() -> dict[str, list[str]]:
    """The reference page's ``##`` sections: heading -> its lines."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in REFERENCE.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            current = sections.setdefault(line[3:].strip(), [])
        elif current is not None:
            current.append(line)
    return sections


def table(lines: list[str]) -> dict[str, tuple[str, str]]:
    """The rows of a key table: key -> (type, default), backticks dropped."""
    rows: dict[str, tuple[str, str]] = {}
    for line in lines:
        if not line.startswith("| `"):
            continue
        cells = [cell.strip().replace("`", "") for cell in line.strip("|").split(" | ")]
        assert len(cells) == 4, f"a reference row needs key | type | default | meaning: {line}"
        assert cells[0] not in rows, f"{cells[0]} documented twice"
        rows[cells[0]] = (cells[1], cells[2])
    return rows


def shown_type(tp: Any) -> str:
    """A field's annotation as the reference writes it."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        rest = [arg for arg in args if arg is not type(None)]
        assert len(args) == 2, f"no reference wording for {tp}"
        inner = shown_type(rest[0])
        return f"{inner}, or null" if inner.startswith("one of") else f"{inner} or null"
    if origin is typing.Literal:
        return "one of " + ", ".join(args)
    if origin is list:
        return f"list of {shown_type(args[0])}s"
    if origin is dict:
        return "mapping" if args[1] is Any else f"mapping of {shown_type(args[1])}s"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}[tp]


def shown_default(field: attrs.Attribute[Any]) -> str:
    """A field's default as the reference writes it (YAML spelling)."""
    if field.name in INJECTED_DEFAULTS:
        return INJECTED_DEFAULTS[field.name]
    default = field.default
    if default is attrs.NOTHING:
        return "required"
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        default = default.factory()
    if default is None:
        return "null"
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, float):
        return f"{default:g}"
    return str(default)


def expected_rows(cls: type) -> dict[str, tuple[str, str]]:
    hints = typing.get_type_hints(cls)
    return {f.name: (shown_type(hints[f.name]), shown_default(f)) for f in attrs.fields(cls)}


def built_in_connectors() -> list[tuple[str, str]]:
    """(role, name) of every connector this project registers (third parties' left out)."""
    found = []
    for group, role in ((SOURCE_GROUP, "source"), (SINK_GROUP, "sink")):
        for point in entry_points(group=group):
            if point.value.startswith("dataflare_host."):
                found.append((role, point.name))
    return sorted(found)


CONNECTORS = built_in_connectors()


def section_of(role: str, name: str) -> tuple[str, list[str]]:
    matches = [(h, lines) for h, lines in reference_sections().items() if f"`{name}` {role}" in h]
    assert len(matches) == 1, f"docs/connectors.md needs one '## `{name}` {role}'"
    return matches[0]


def test_the_project_registers_the_connectors_the_reference_covers() -> None:
    """Guards the parametrisation below: it must not silently cover nothing."""
    assert {name for _, name in CONNECTORS} >= {
        "file", "stdin", "generator", "postgres", "redis", "stdout", "elasticsearch",
    }


@pytest.mark.parametrize(("role", "name"), CONNECTORS, ids=[f"{n}-{r}" for r, n in CONNECTORS])
def test_every_key_of_every_connector_is_documented_with_its_type_and_default(
    role: str, name: str
) -> None:
    registry = ConnectorRegistry.from_entry_points()
    cls = registry.source(name) if role == "source" else registry.sink(name)
    assert cls is not None
    heading, lines = section_of(role, name)
    documented = table(lines)
    if heading.count("` ") > 1:
        # A shared section ("`stdin` source and `stdout` sink") is for keyless connectors.
        assert attrs.fields(cls.Config) == (), heading
        assert documented == {}, heading
        return
    assert documented == expected_rows(cls.Config)


def test_every_key_of_a_source_or_sink_entry_is_documented() -> None:
    """plugin_type, plugin_name, plugin_path, connection, params: the entry's own keys."""
    _, lines = next(
        (h, lines) for h, lines in reference_sections().items() if "Every source and sink" in h
    )
    assert table(lines) == expected_rows(ConnectorConfig)


def test_the_reference_documents_no_connector_that_is_not_registered() -> None:
    registered = {f"`{name}` {role}" for role, name in CONNECTORS}
    for heading in reference_sections():
        named = re.findall(r"`(\w+)` (source|sink)", heading)
        assert all(f"`{n}` {r}" in registered for n, r in named), heading


def test_the_table_reader_sees_a_stale_default() -> None:
    """The comparison can fail: a row whose default drifted is read as different."""
    row = ["| `start_id` | string | `0` | where a new group starts |"]
    assert table(row) == {"start_id": ("string", "0")}
    assert table(row)["start_id"] != expected_rows(
        ConnectorRegistry.from_entry_points().source("redis").Config  # type: ignore[union-attr]
    )["start_id"]
