"""The shell completion that docs/operations.md tells users to install works."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from dataflare_host.cli import main

OPERATIONS = Path(__file__).parents[2] / "docs" / "operations.md"


def documented_shells() -> list[str]:
    """The shells of the page's ``_DATAFLARE_COMPLETE=<shell>_source`` lines, each once.

    A shell may appear twice (bash: the start-up line, and writing the script to a file).
    """
    lines = re.findall(r"_DATAFLARE_COMPLETE=(\w+)_source dataflare", OPERATIONS.read_text())
    return sorted(set(lines))


def test_the_page_documents_bash_zsh_and_fish() -> None:
    assert sorted(documented_shells()) == ["bash", "fish", "zsh"]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_each_documented_line_prints_a_completion_script(shell: str) -> None:
    result = CliRunner().invoke(
        main, [], prog_name="dataflare", env={"_DATAFLARE_COMPLETE": f"{shell}_source"}
    )
    assert result.exit_code == 0, result.output
    assert "_dataflare_completion" in result.output or "complete -c dataflare" in result.output


def test_completion_offers_the_commands() -> None:
    """What bash asks for ``dataflare ca<TAB>``: the cache command."""
    result = CliRunner().invoke(
        main,
        [],
        prog_name="dataflare",
        env={
            "_DATAFLARE_COMPLETE": "bash_complete",
            "COMP_WORDS": "dataflare ca",
            "COMP_CWORD": "1",
        },
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["plain,cache"]
