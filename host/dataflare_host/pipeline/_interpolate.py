"""``${VAR}`` and ``${VAR:-default}`` in pipeline files, resolved from the environment.

Substitution happens on the parsed YAML nodes, before any value is constructed,
so a plain scalar keeps YAML's typing (``port: ${PGPORT}`` is an integer when
PGPORT holds one) and an error names the line of the value that asked for it.
``$${`` writes a literal ``${``. Secrets (``password: ${PGPASSWORD}``) never
need to be written into the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import yaml

from dataflare import ConfigurationError

__all__ = ["interpolate"]

_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def interpolate(
    root: yaml.Node,
    loader: yaml.SafeLoader,
    file: Path,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Replace every reference in ``root``'s scalars, in place (each node once)."""
    env = os.environ if environ is None else environ
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            _substitute(node, loader, file, env)
        elif isinstance(node, yaml.MappingNode):
            # Keys stay literal: only values are configuration.
            stack.extend(value for _key, value in node.value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def _substitute(
    node: yaml.ScalarNode, loader: yaml.SafeLoader, file: Path, env: Mapping[str, str]
) -> None:
    text = node.value
    if "${" not in text:
        return
    line = node.start_mark.line + 1

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        body = match.group(1)
        name, sep, default = body.partition(":-")
        if not _NAME.match(name):
            raise ConfigurationError(
                f"{file}:{line}: ${{{body}}} is not a variable reference; write ${{NAME}} or "
                "${NAME:-default} (and $${ for a literal ${)"
            )
        value = env.get(name)
        if value is None or (sep and value == ""):
            if sep:
                return default
            raise ConfigurationError(
                f"{file}:{line}: environment variable {name} is not set; set it, or give a "
                f"default with ${{{name}:-default}}"
            )
        return value

    node.value = _REFERENCE.sub(replace, text)
    if node.style is None:  # a plain scalar: type it as YAML would have typed the value
        # PyYAML is untyped; resolve() is its own implicit-tag rule for plain scalars.
        node.tag = loader.resolve(  # type: ignore[no-untyped-call]
            yaml.ScalarNode, node.value, (True, False)
        )
