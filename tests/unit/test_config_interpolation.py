"""``${VAR}`` in pipeline files: secrets and settings from the environment, never written down."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from dataflare import ConfigurationError
from dataflare_host.cli._main import main
from dataflare_host.pipeline import load_pipeline_config

PIPELINE = """\
name: ${PIPELINE_NAME:-from-default}
sources:
  - id: in
    type: plugin
    config:
      plugin_type: generator
      connection:
        count: ${COUNT}
        shape: "${SHAPE:-json}"
sinks:
  - id: out
    type: plugin
    config:
      plugin_type: file
      connection: {path: "out/$${literal}.jsonl"}
"""


def write(tmp_path: Path, text: str = PIPELINE) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_variables_and_defaults_are_substituted_and_typed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain ${COUNT} of digits is an integer, as if written; defaults apply; $${ is literal."""
    monkeypatch.setenv("COUNT", "7")
    monkeypatch.delenv("PIPELINE_NAME", raising=False)
    monkeypatch.setenv("SHAPE", "text")
    config, _ = load_pipeline_config(write(tmp_path))
    assert config.name == "from-default"
    connection = config.sources[0].config.connection
    assert connection == {"count": 7, "shape": "text"}
    assert config.sinks[0].config.connection == {"path": "out/${literal}.jsonl"}


def test_a_missing_variable_is_a_located_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COUNT", raising=False)
    path = write(tmp_path)
    with pytest.raises(ConfigurationError) as caught:
        load_pipeline_config(path)
    assert str(caught.value) == (
        f"{path}:8: environment variable COUNT is not set; set it, or give a default with "
        "${COUNT:-default}"
    )
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "COUNT is not set" in result.stderr


def test_a_malformed_reference_is_a_located_error(tmp_path: Path) -> None:
    path = write(tmp_path, PIPELINE.replace("${COUNT}", "${not a name}"))
    with pytest.raises(ConfigurationError, match=r"p\.yaml:8: \$\{not a name\} is not a variable"):
        load_pipeline_config(path)
