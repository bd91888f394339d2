"""griffe extension: show the code's reST-flavoured docstrings as Markdown.

The docstrings are written for ``help()`` and doctest: ``>>>`` examples with their
output on the next lines, and Sphinx roles such as ``:class:`Record```. Markdown
would run an example's lines into one paragraph (and read ``[b'ab']`` as a link),
so each example becomes a ``pycon`` code block and each role plain code.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|func|meth|attr|mod|exc|data|obj|const):`~?([^`]+)`")
_PROMPT = re.compile(r"^(\s*)>>> ")


def markdown_of(text: str) -> str:
    """``text`` with doctest blocks fenced and Sphinx roles made code spans."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        prompt = _PROMPT.match(lines[i])
        if prompt is None:
            out.append(_ROLE.sub(r"`\1`", lines[i]))
            i += 1
            continue
        indent = prompt.group(1)
        block = []
        while i < len(lines) and lines[i].strip() and lines[i].startswith(indent):
            block.append(lines[i][len(indent):])
            i += 1
        out += [f"{indent}```pycon", *(indent + line for line in block), f"{indent}```"]
    return "\n".join(out)


class RstDocstrings(griffe.Extension):
    """Rewrites every docstring griffe reads (sources are read, never imported)."""

    def on_instance(self, *, node: Any, obj: griffe.Object, agent: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_of(obj.docstring.value)
