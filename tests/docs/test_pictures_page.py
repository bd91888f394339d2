"""The Pictures page shows the bundled example as ``dataflare graph`` draws it today.

docs/pictures.md embeds the Mermaid text of ``examples/pipeline.yaml`` in a
```` ```mermaid ```` fence and its SVG as ``docs/images/example-pipeline.svg``. Both are
drawn again here, as a reader would (``dataflare graph examples/pipeline.yaml`` from the
checkout), and must equal what is committed, so a change to the example or to the
drawing cannot leave a stale picture behind.
"""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from support.paths import REPO

from dataflare_host.cli import main

PAGE = REPO / "docs" / "pictures.md"
SVG = REPO / "docs" / "images" / "example-pipeline.svg"
EXAMPLE = "examples/pipeline.yaml"
REGENERATE = (
    "regenerate it from the checkout's root: .venv/bin/dataflare graph examples/pipeline.yaml"
)


def drawn(monkeypatch: pytest.MonkeyPatch, *options: str) -> str:
    """What ``dataflare graph examples/pipeline.yaml OPTIONS`` prints, run from the checkout."""
    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(main, ["graph", EXAMPLE, *options], prog_name="dataflare")
    assert result.exit_code == 0, result.output
    return result.output


def test_the_page_embeds_the_mermaid_graph_of_the_example(monkeypatch: pytest.MonkeyPatch) -> None:
    fences = re.findall(r"^```mermaid\n(.*?)^```$", PAGE.read_text(encoding="utf-8"), re.S | re.M)
    assert len(fences) == 1, "docs/pictures.md should hold exactly one ```mermaid fence"
    assert fences[0] == drawn(monkeypatch), (
        "the ```mermaid fence of docs/pictures.md is not what dataflare graph draws for "
        f"{EXAMPLE}: {REGENERATE} and paste its output into the fence"
    )


def test_the_committed_svg_is_the_example_drawn_today(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "](images/example-pipeline.svg)" in PAGE.read_text(encoding="utf-8")
    assert SVG.read_text(encoding="utf-8") == drawn(monkeypatch, "--format", "svg"), (
        f"{SVG.relative_to(REPO)} is stale: {REGENERATE} --format svg > "
        "docs/images/example-pipeline.svg"
    )
