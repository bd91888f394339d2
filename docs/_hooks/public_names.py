"""mkdocs hook: the API pages document every public name, and only public names.

Each package below lists its public names in ``__all__``. The hook reads that list
from the source (``ast``, nothing imported) and the ``::: package.Name`` directives of
every page, and aborts the build when a public name has no directive or a directive
names something outside ``__all__``. mkdocstrings then fails on a directive whose
object does not exist, so a name added, removed or renamed without the API pages
following breaks ``mkdocs build``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from mkdocs.exceptions import Abort

PACKAGES = {
    "dataflare": "sdk/dataflare/__init__.py",
    "dataflare.runtime": "sdk/dataflare/runtime/__init__.py",
    "dataflare_host": "host/dataflare_host/__init__.py",
    "dataflare_host.testing": "host/dataflare_host/testing/__init__.py",
}
DIRECTIVE = re.compile(r"^::: *([\w.]+) *$", re.MULTILINE)


def public_names(init: Path) -> list[str]:
    """The strings of ``__all__ = [...]`` in ``init``."""
    for node in ast.parse(init.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "__all__" for target in node.targets
        ):
            return [str(item) for item in ast.literal_eval(node.value)]
    raise Abort(f"{init}: no __all__ list to check the API pages against")


def on_pre_build(config: Any) -> None:
    """Compare each package's ``__all__`` with the directives of the docs pages."""
    root = Path(__file__).resolve().parents[2]  # the checkout: docs/_hooks/ is two below
    documented: set[str] = set()
    for page in Path(config["docs_dir"]).rglob("*.md"):
        documented.update(DIRECTIVE.findall(page.read_text(encoding="utf-8")))
    problems = []
    for package, init in PACKAGES.items():
        names = {f"{package}.{name}" for name in public_names(root / init)}
        in_package = {d for d in documented if d.rpartition(".")[0] == package}
        problems += [f"{name} is public but no page has '::: {name}'" for name in
                     sorted(names - in_package)]
        problems += [f"'::: {name}' documents a name not in {package}.__all__" for name in
                     sorted(in_package - names)]
    if problems:
        raise Abort("API pages out of date:\n  " + "\n  ".join(problems))
