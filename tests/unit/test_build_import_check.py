"""A module-level import the guest cannot satisfy is found in the source, before componentize-py
compiles anything; an import that may be guarded is left to the build."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataflare_host.wasm.build._import_check import MissingImport, missing_import


@pytest.fixture
def stage(tmp_path: Path) -> Path:
    """A stage holding what a build stages: the SDK, attrs, a bundled dependency."""
    folder = tmp_path / "stage"
    for package in ("dataflare", "attrs", "attr", "humanize"):
        (folder / package).mkdir(parents=True)
        (folder / package / "__init__.py").write_text("")
    (folder / "dataflare_app.py").write_text("")
    return folder


def plugin(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "p.py"
    path.write_text(source, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("source", "module", "line"),
    [
        ("import dataflare\nimport yaml\n", "yaml", 2),
        ("import json\n\nfrom requests.adapters import HTTPAdapter\n", "requests", 3),
        ("import os, numpy as np\n", "numpy", 1),
    ],
)
def test_an_unconditional_import_the_stage_lacks_is_named_with_its_line(
    tmp_path: Path, stage: Path, source: str, module: str, line: int
) -> None:
    file = plugin(tmp_path, source)
    assert missing_import([file], stage) == MissingImport(module=module, file=file, line=line)


@pytest.mark.parametrize(
    "source",
    [
        "import json, re\nfrom collections import abc\nimport dataflare\nimport attrs\n",
        "from __future__ import annotations\nimport annotationlib\n",
        "import humanize.time\n",  # a bundled dependency
        "from . import rules\nfrom .rules import limit\n",  # inside the plugin's package
        "try:\n    import yaml\nexcept ImportError:\n    yaml = None\n",
        "import sys\nif sys.platform != 'wasi':\n    import yaml\n",
        "def later():\n    import yaml\n",
    ],
)
def test_what_the_guest_has_or_may_be_guarded_passes(
    tmp_path: Path, stage: Path, source: str
) -> None:
    assert missing_import([plugin(tmp_path, source)], stage) is None


def test_every_file_of_a_package_is_read(tmp_path: Path, stage: Path) -> None:
    first = tmp_path / "__init__.py"
    first.write_text("from .rules import limit\n")
    second = tmp_path / "rules.py"
    second.write_text("import dataflare\n\nimport pandas\n")
    assert missing_import([first, second], stage) == MissingImport("pandas", second, 3)
