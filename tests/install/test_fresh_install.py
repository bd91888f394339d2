"""The install command the README shows works on a fresh virtual environment, and a new
plugin's own tests pass there (issue 25, acceptance 2).

`python -m venv`, then the README's `pip install '/path/to/dataflare-plugins[test]'` with this
checkout's folder in place of the placeholder (the package is on no index: it installs from
a clone), then `dataflare new x` and the test
command the scaffold's README gives. Slow: it installs every dependency (from pip's cache)
and the scaffold's parity test builds a component.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from support.paths import REPO

pytestmark = [pytest.mark.slow, pytest.mark.wasm]

CLONE = "/path/to/dataflare-plugins"
"""What the README's install command says in place of the clone's folder."""


def readme_install_command() -> list[str]:
    """The README's `pip install` line, as argv, for this checkout."""
    (line,) = [
        text
        for text in (REPO / "README.md").read_text().splitlines()
        if text.startswith("pip install ")
    ]
    argv = shlex.split(line.split("#", 1)[0])
    assert any(CLONE in arg for arg in argv), line
    return [arg.replace(CLONE, str(REPO)) for arg in argv]


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    tail = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"{shlex.join(argv)}:\n{tail}"
    return done


def test_readme_install_then_new_then_the_scaffolds_tests_pass(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    bin_dir = venv / "bin"
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")},
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "VIRTUAL_ENV": str(venv),
        "DATAFLARE_CACHE_DIR": str(tmp_path / "cache"),  # a fresh machine's empty cache
    }
    run([sys.executable, "-m", "venv", str(venv)], tmp_path, env)
    run(readme_install_command(), tmp_path, env)
    assert (bin_dir / "pytest").is_file(), "the test extra did not install pytest"

    created = run(["dataflare", "new", "x", "--kind", "map"], tmp_path, env)
    assert "pytest is not installed" not in created.stdout
    readme = (tmp_path / "x" / "README.md").read_text()
    assert "[test]" in readme  # the scaffold says what its tests need
    (command,) = [line for line in readme.splitlines() if line.startswith("pytest ")]
    tested = run([*shlex.split(command), "-p", "no:cacheprovider"], tmp_path / "x", env)
    assert " passed" in tested.stdout
    assert " failed" not in tested.stdout
    # The wheel carried the shared WASM runtime: the scaffold's WASM test only compiled it.
    durations = json.loads((tmp_path / "cache" / "durations.json").read_text())
    assert "compile the shared runtime" in durations
    assert "componentize the shared runtime" not in durations
    assert "componentize" not in durations  # nor was the plugin built whole
