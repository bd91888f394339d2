"""``${VAR}`` and ``${VAR:-default}`` in pipeline files, resolved from the environment.

Substitution happens on the parsed YAML nodes, before any value is constructed,
so a plain scalar keeps YAML's typing (``port: ${PGPORT}`` is an integer when
PGPORT holds one) and an error names the line of the value that asked for it.
``$${`` writes a literal ``${``. Secrets (``password: ${PGPASSWORD}``) never
need to be written into the file, and an error about a substituted value shows
it as written (``${PGPASSWORD}``), never the value the environment gave.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import attrs
import yaml

from dataflare import ConfigurationError

__all__ = ["Substitution", "interpolate"]

_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@attrs.frozen
class Substitution:
    """One scalar whose text came (partly) from the environment: what to show instead."""

    written: str
    """The scalar as written in the file (``postgres://app:${PGPW}@db``)."""
    value: str
    """The scalar after substitution."""
    parts: tuple[tuple[str, str], ...]
    """Each environment value used, with its reference as written (``("s3cret", "${PGPW}")``)."""

    def hide(self, message: str) -> str:
        """``message`` with this scalar's substituted text shown as written."""
        for value, shown in ((self.value, self.written), *self.parts):
            if not value:
                continue
            forms = {value, repr(value)[1:-1]}  # repr(): how messages quote text
            if value.isdigit():
                forms.add(f"{int(value):,}")  # messages print numbers with separators
            for form in sorted(forms, key=len, reverse=True):
                # Whole tokens only: a value "1" must not rewrite "1,000" in a bound.
                token = re.compile(rf"(?<!\w){re.escape(form)}(?!\w)")
                message = token.sub(shown.replace("\\", "\\\\"), message)
        return message


def interpolate(
    root: yaml.Node,
    loader: yaml.SafeLoader,
    file: Path,
    environ: Mapping[str, str] | None = None,
) -> dict[int, Substitution]:
    """Replace every reference in ``root``'s scalars, in place (each node once).

    Returns what was substituted, by ``id()`` of the scalar node, so that errors
    can show the references instead of the values.
    """
    env = os.environ if environ is None else environ
    substituted: dict[int, Substitution] = {}
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            substitution = _substitute(node, loader, file, env)
            if substitution is not None:
                substituted[id(node)] = substitution
        elif isinstance(node, yaml.MappingNode):
            # Keys stay literal: only values are configuration.
            stack.extend(value for _key, value in node.value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return substituted


def _substitute(
    node: yaml.ScalarNode, loader: yaml.SafeLoader, file: Path, env: Mapping[str, str]
) -> Substitution | None:
    text = node.value
    if "${" not in text:
        return None
    line = node.start_mark.line + 1
    parts: list[tuple[str, str]] = []

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
        parts.append((value, match.group(0)))
        return value

    node.value = _REFERENCE.sub(replace, text)
    if node.style is None:  # a plain scalar: type it as YAML would have typed the value
        # PyYAML is untyped; resolve() is its own implicit-tag rule for plain scalars.
        node.tag = loader.resolve(  # type: ignore[no-untyped-call]
            yaml.ScalarNode, node.value, (True, False)
        )
    if not parts:
        return None
    return Substitution(text, node.value, tuple(parts))
