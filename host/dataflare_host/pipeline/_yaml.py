"""YAML loading that remembers where every value came from (file and line)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import yaml

from dataflare import ConfigurationError
from dataflare_host.pipeline._interpolate import Substitution, interpolate

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_NODES",
    "LocatedYaml",
    "YamlPath",
    "format_path",
    "load_located",
]

MAX_BYTES = 256 * 1024
"""Largest pipeline file read (a pipeline file is a few kilobytes; data goes in a source)."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and sequences a pipeline file may have."""
MAX_NODES = 100_000
"""Most nodes a pipeline document may hold, and expand to through aliases."""

YamlPath = tuple[str | int, ...]


def format_path(path: YamlPath) -> str:
    """``("sources", 0, "config")`` as ``sources[0].config``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


@attrs.frozen
class LocatedYaml:
    """A parsed YAML document and the line (1-based) of each path in it."""

    data: Any
    file: Path
    lines: dict[YamlPath, int]
    substituted: dict[YamlPath, Substitution] = attrs.Factory(dict)
    """The values that came from ``${VAR}`` references, by path."""

    def line_of(self, path: Sequence[str | int]) -> int:
        """The line of ``path``, or of its nearest ancestor present in the file."""
        probe = tuple(path)
        while probe and probe not in self.lines:
            probe = probe[:-1]
        return self.lines.get(probe, 1)

    def error(self, path: Sequence[str | int], message: str) -> ConfigurationError:
        """A configuration error naming the file, line and YAML path.

        A value at or under ``path`` that came from the environment is shown as the
        ``${VAR}`` written in the file: it may be a secret.
        """
        at = tuple(path)
        for where, substitution in self.substituted.items():
            if where[: len(at)] == at:
                message = substitution.hide(message)
        return ConfigurationError(f"{self.file}:{self.line_of(at)}: {format_path(at)}: {message}")


def _check_shape(text: str, file: Path) -> None:
    """Refuse a document nested too deep or holding too many nodes, before composing it.

    PyYAML composes nodes recursively (100,000 nested ``[`` end in a RecursionError)
    and slowly; its event stream is flat, and with libyaml it is fast. A document
    the event stream cannot parse is left to the composer, whose message says
    where the YAML is wrong.
    """
    # libyaml first (fast); it refuses some documents outright (its own nesting
    # bound, before any event), so the pure-Python stream, which refuses only
    # where it stands, has the last word.
    loaders = [getattr(yaml, "CSafeLoader", None), yaml.SafeLoader]
    for loader in filter(None, loaders):
        try:
            _count_events(yaml.parse(text, Loader=loader), file)
        except yaml.YAMLError:
            continue
        return


def _count_events(events: Iterator[yaml.Event], file: Path) -> None:
    depth = nodes = 0
    for event in events:
        line = event.start_mark.line + 1 if event.start_mark is not None else 1
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise ConfigurationError(
                    f"{file}:{line}: nested more than {MAX_DEPTH} "
                    "levels deep, the most a pipeline file may nest; flatten it"
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        if isinstance(event, (yaml.CollectionStartEvent, yaml.ScalarEvent)):
            nodes += 1
            if nodes > MAX_NODES:
                raise ConfigurationError(
                    f"{file}:{line}: the file holds more than "
                    f"{MAX_NODES:,} nodes (keys and values), the most a pipeline file "
                    "may hold; put data in a source, not in the pipeline file"
                )


def _quoting_hint(text: str, line: int) -> str:
    # "{size: ${N}}" is not YAML (in flow style "{" ends a plain value), and quoting
    # it would make a number a string: the way out is block style.
    lines = text.splitlines()
    near = lines[max(0, line - 2) : line]
    if any("${" in each and ("{" in each.replace("${", "") or "[" in each) for each in near):
        return (
            "; a ${NAME} reference cannot stand inside { } or [ ]: write that mapping "
            "as indented lines"
        )
    return ""


def load_located(file: Path) -> LocatedYaml:
    """Parse ``file``; raise ConfigurationError with file and line for bad YAML."""
    try:
        with file.open("rb") as stream:
            # Bounded before anything is parsed: a huge file is refused at once.
            raw = stream.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigurationError(f"{file}: cannot read the pipeline file: {exc.strerror}") from exc
    if len(raw) > MAX_BYTES:
        raise ConfigurationError(
            f"{file}: larger than {MAX_BYTES:,} bytes, the most a pipeline file may be; "
            "put data in a source, not in the pipeline file"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigurationError(
            f"{file}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the pipeline "
            "file as UTF-8"
        ) from exc
    _check_shape(text, file)
    loader = yaml.SafeLoader(text)
    substituted: dict[int, Substitution] = {}
    try:
        node = loader.get_single_node()
        # Before constructing anything: a document whose aliases expand to a huge
        # tree (a "billion laughs") is refused here, in linear time.
        if node is not None:
            _check_size(node, file)
            substituted = interpolate(node, loader, file)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigurationError(
            f"{file}:{line}: invalid YAML: {problem}{_quoting_hint(text, line)}"
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{file}: invalid YAML: {exc}") from exc
    finally:
        loader.dispose()
    lines: dict[YamlPath, int] = {}
    by_path: dict[YamlPath, Substitution] = {}
    if node is not None:
        _walk(node, (), lines, file, substituted, by_path)
    return LocatedYaml(data, file, lines, by_path)


def _check_size(root: yaml.Node, file: Path) -> None:
    # Count each node's expanded size once (aliases share node objects), so the
    # check itself stays linear however deeply aliases nest.
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        if not children_done:
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)
            continue
        size = 1 + sum(sizes.get(id(child), 1) for child in children)
        if size > MAX_NODES:
            raise ConfigurationError(
                f"{file}:{node.start_mark.line + 1}: through its YAML aliases, the document "
                f"expands to more than {MAX_NODES:,} nodes, the most a pipeline file may "
                "hold; refusing it"
            )
        sizes[id(node)] = size


def _walk(
    node: yaml.Node,
    path: YamlPath,
    lines: dict[YamlPath, int],
    file: Path,
    substituted: dict[int, Substitution],
    by_path: dict[YamlPath, Substitution],
) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if id(node) in substituted:
        by_path[path] = substituted[id(node)]
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigurationError(
                    f"{file}:{line}: {format_path((*path, key))}: duplicate key "
                    f"(first given at line {seen[key]}); YAML would silently keep only the last"
                )
            seen[key] = line
            lines[(*path, key)] = line
            _walk(value_node, (*path, key), lines, file, substituted, by_path)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _walk(item, (*path, index), lines, file, substituted, by_path)
