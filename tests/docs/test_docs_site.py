"""The docs site builds with ``mkdocs build --strict``, and the strict build catches mistakes.

The build runs the venv's mkdocs in a child process, as a contributor would
(``.venv/bin/mkdocs build --strict``). The other tests build a copy of the docs
tree with a mistake put in on purpose, so the passing build is shown to check
something: a broken link or anchor fails it, and so does a public name that no
API page documents.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.paths import REPO

pytestmark = pytest.mark.slow


def build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """``mkdocs build --strict`` of ``config`` into ``site``."""
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        cwd=REPO,
    )


def copied_site(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of ``docs/`` and a ``mkdocs.yml`` building it with the real settings.

    The config's relative paths (the docs folder, the hooks, the source folders
    mkdocstrings reads) are made absolute: only the docs tree is a copy.
    """
    docs = tmp_path / "docs"
    shutil.copytree(REPO / "docs", docs)
    text = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    replacements = {
        "docs_dir: docs\n": f"docs_dir: {docs}\n",
        "paths: [sdk, host]\n": f"paths: [{REPO / 'sdk'}, {REPO / 'host'}]\n",
        "- docs/_hooks/public_names.py\n": f"- {REPO / 'docs/_hooks/public_names.py'}\n",
        "- docs/_hooks/rst_docstrings.py:": f"- {REPO / 'docs/_hooks/rst_docstrings.py'}:",
    }
    for old, new in replacements.items():
        assert old in text, f"mkdocs.yml no longer has {old!r}: update this test"
        text = text.replace(old, new)
    config = tmp_path / "mkdocs.yml"
    config.write_text(text, encoding="utf-8")
    return config, docs


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    """Every page, link, anchor and API name resolves: mkdocs build --strict exits 0."""
    done = build(REPO / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "internals" / "index.html").is_file()
    api = (tmp_path / "site" / "api" / "dataflare" / "index.html").read_text(encoding="utf-8")
    assert "dataflare.KeyedState" in api  # the API pages are rendered from the docstrings


def test_a_broken_link_or_anchor_fails_the_build(tmp_path: Path) -> None:
    """A link to a page that does not exist, or to a heading that does not, is an error."""
    config, docs = copied_site(tmp_path)
    page = docs / "pipelines.md"
    page.write_text(
        page.read_text(encoding="utf-8")
        + "\nSee [the missing page](no-such-page.md)"
        + " and [a missing heading](scaling.md#no-such-heading).\n",
        encoding="utf-8",
    )
    done = build(config, tmp_path / "site")
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "no-such-page.md" in output
    assert "no-such-heading" in output


def test_a_public_name_missing_from_the_api_pages_fails_the_build(tmp_path: Path) -> None:
    """Taking ``::: dataflare.KeyedState`` off its page aborts the build, naming it."""
    config, docs = copied_site(tmp_path)
    page = docs / "api" / "dataflare.md"
    text = page.read_text(encoding="utf-8")
    assert "::: dataflare.KeyedState\n" in text
    page.write_text(text.replace("::: dataflare.KeyedState\n", ""), encoding="utf-8")
    done = build(config, tmp_path / "site")
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert re.search(r"dataflare\.KeyedState is public but no page has", output), output
