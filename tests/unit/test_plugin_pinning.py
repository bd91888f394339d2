"""``sha256:`` beside ``plugin_path`` pins a plugin's bytes: other bytes are refused."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from support.output import line_of
from support.pipeline_files import write_one_processor_pipeline

from dataflare import ConfigurationError
from dataflare_host.pipeline import Pipeline

PLUGIN = "import dataflare\n\n\n@dataflare.filter\ndef keep(record):\n    return True\n"


def write(tmp_path: Path, pin: str) -> Path:
    (tmp_path / "keep.py").write_text(PLUGIN, encoding="utf-8")
    return write_one_processor_pipeline(
        tmp_path / "p.yaml", {"plugin_type": "filter", "plugin_path": "keep.py", "sha256": pin}
    )


def test_the_pinned_bytes_load(tmp_path: Path) -> None:
    digest = hashlib.sha256(PLUGIN.encode()).hexdigest()
    Pipeline.from_file(write(tmp_path, f"sha256:{digest}")).close()


def test_other_bytes_are_refused_at_the_pins_line(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"something else").hexdigest()
    path = write(tmp_path, f"sha256:{digest}")
    with pytest.raises(ConfigurationError) as caught:
        Pipeline.from_file(path)
    actual = hashlib.sha256(PLUGIN.encode()).hexdigest()
    line = line_of(path.read_text(), "sha256:")
    assert str(caught.value) == (
        f"{path}:{line}: processors[0].config.sha256: {tmp_path / 'keep.py'} has "
        f"sha256:{actual}, not the pinned sha256:{digest}; the file changed: if that is "
        "intended, update the pin"
    )


def test_a_malformed_pin_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="is not sha256:<64 hex digits>"):
        Pipeline.from_file(write(tmp_path, "sha256:abc"))
