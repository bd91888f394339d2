"""The module paths the docs name exist, and the internals page lists every sandbox module.

Modules move (issue 21 split the sandbox into rooms by process, the file connectors and
the CLI by job); a page naming a module that is gone sends a contributor nowhere. Two
forms are checked: a full path (``host/dataflare_host/...py``, ``sdk/dataflare/...py``)
anywhere in ``docs/`` or ``CONTRIBUTING.md``, and a path in the first column of a table
of ``docs/internals.md``, which is relative to ``host/dataflare_host/``. A former name
given as ``(was ...)`` is history, not a path, and is skipped.
"""

from __future__ import annotations

import re

from support.paths import REPO

PAGES = [*sorted((REPO / "docs").rglob("*.md")), REPO / "CONTRIBUTING.md"]
INTERNALS = REPO / "docs" / "internals.md"
HOST = REPO / "host" / "dataflare_host"
FULL_PATH = re.compile(r"(?<![\w./-])(?:host|sdk)/[\w./-]*?\.py\b")
FORMER_NAMES = re.compile(r"\(was [^)]*\)")
TICKED_PATH = re.compile(r"`([\w./-]+/[\w.-]+\.py)`")


def full_paths() -> dict[str, set[str]]:
    """Each full module path any page names, with the pages naming it."""
    named: dict[str, set[str]] = {}
    for page in PAGES:
        for path in FULL_PATH.findall(page.read_text(encoding="utf-8")):
            named.setdefault(path, set()).add(str(page.relative_to(REPO)))
    return named


def internals_table_paths() -> set[str]:
    """The paths in the first column of the internals page's tables (under ``HOST``)."""
    paths: set[str] = set()
    for line in INTERNALS.read_text(encoding="utf-8").splitlines():
        if not line.startswith("| `"):
            continue
        first_cell = FORMER_NAMES.sub("", line.split("|")[1])
        paths.update(TICKED_PATH.findall(first_cell))
    return paths


def test_every_full_module_path_in_the_docs_exists() -> None:
    named = full_paths()
    assert "host/dataflare_host/pipeline/_design_names.py" in named  # guards the scan
    missing = {path: pages for path, pages in named.items() if not (REPO / path).is_file()}
    assert missing == {}, f"pages name modules that do not exist: {missing}"


def test_every_module_of_the_internals_tables_exists() -> None:
    paths = internals_table_paths()
    assert "wasm/sandbox/protocol.py" in paths  # guards the scan
    missing = sorted(path for path in paths if not (HOST / path).is_file())
    assert missing == [], f"docs/internals.md lists modules that do not exist: {missing}"


def test_the_internals_page_lists_every_sandbox_module() -> None:
    """Every module of ``wasm/`` has its row: which process runs it."""
    modules = {str(p.relative_to(HOST)) for p in (HOST / "wasm").rglob("*.py")}
    unlisted = sorted(modules - internals_table_paths())
    assert unlisted == [], f"docs/internals.md has no row for: {unlisted}"
