"""The README is a landing page: short, the three commands CI and users run, working links."""

from __future__ import annotations

import re

from support.paths import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")

SET_UP = "bash scripts/setup"
TEST = ".venv/bin/pytest -n auto"
DEMO = ".venv/bin/dataflare run examples/pipeline.yaml"


def test_the_readme_is_at_most_150_lines() -> None:
    assert len(README.splitlines()) <= 150


def test_the_three_commands_open_lines_of_the_readme() -> None:
    starts = [line.split("#")[0].strip() for line in README.splitlines()]
    for command in (SET_UP, TEST, DEMO):
        assert command in starts, f"README has no line running {command!r}"


def test_ci_runs_the_readme_set_up_and_test_commands_in_order() -> None:
    lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert lines.index(SET_UP) < lines.index(TEST)


def test_every_relative_link_of_the_readme_exists() -> None:
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README)
    relative = [link for link in links if "://" not in link]
    assert "docs/index.md" in relative  # guards the scan: it must find the docs links
    missing = [link for link in relative if not (REPO / link).exists()]
    assert missing == []


def test_every_docs_page_is_linked_from_the_readme() -> None:
    pages = {str(p.relative_to(REPO)) for p in (REPO / "docs").rglob("*.md")}
    pages = {p for p in pages if not p.startswith("docs/_")}
    assert pages
    assert pages <= set(re.findall(r"\]\((docs/[^)#]+\.md)", README))
