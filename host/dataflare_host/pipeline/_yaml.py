"""YAML loading that remembers where every value came from (file and line)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import yaml

from dataflare import ConfigurationError
from dataflare_host.pipeline._interpolate import interpolate

__all__ = ["LocatedYaml", "YamlPath", "format_path", "load_located"]

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

    def line_of(self, path: Sequence[str | int]) -> int:
        """The line of ``path``, or of its nearest ancestor present in the file."""
        probe = tuple(path)
        while probe and probe not in self.lines:
            probe = probe[:-1]
        return self.lines.get(probe, 1)

    def error(self, path: Sequence[str | int], message: str) -> ConfigurationError:
        """A configuration error naming the file, line and YAML path."""
        return ConfigurationError(
            f"{self.file}:{self.line_of(path)}: {format_path(tuple(path))}: {message}"
        )


def load_located(file: Path) -> LocatedYaml:
    """Parse ``file``; raise ConfigurationError with file and line for bad YAML."""
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{file}: cannot read the pipeline file: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigurationError(
            f"{file}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the pipeline "
            "file as UTF-8"
        ) from exc
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        # Before constructing anything: a document whose aliases expand to a huge
        # tree (a "billion laughs") is refused here, in linear time.
        if node is not None:
            _check_size(node, file)
            interpolate(node, loader, file)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigurationError(f"{file}:{line}: invalid YAML: {problem}") from exc
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{file}: invalid YAML: {exc}") from exc
    finally:
        loader.dispose()
    lines: dict[YamlPath, int] = {}
    if node is not None:
        _walk(node, (), lines, file)
    return LocatedYaml(data, file, lines)


MAX_NODES = 100_000
"""Most nodes a pipeline document may expand to, aliases included."""


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
                f"{file}:{node.start_mark.line + 1}: the document expands to more than "
                f"{MAX_NODES:,} nodes (through YAML aliases?); a pipeline file is far smaller, "
                "refusing it"
            )
        sizes[id(node)] = size


def _walk(node: yaml.Node, path: YamlPath, lines: dict[YamlPath, int], file: Path) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
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
            _walk(value_node, (*path, key), lines, file)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _walk(item, (*path, index), lines, file)
