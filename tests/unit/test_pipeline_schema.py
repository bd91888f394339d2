"""The published JSON Schema of pipeline files accepts what the loader accepts."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner
from support.paths import REPO

from dataflare_host.cli._main import main
from dataflare_host.pipeline._schema import pipeline_schema

EXAMPLE_PIPELINES = sorted((REPO / "examples").rglob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLE_PIPELINES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_bundled_pipeline_matches_the_schema(path: Path) -> None:
    jsonschema.validate(yaml.safe_load(path.read_text()), pipeline_schema())


def test_the_schema_refuses_an_unknown_key_and_a_bad_policy() -> None:
    doc = yaml.safe_load(EXAMPLE_PIPELINES[0].read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**doc, "sourcez": []}, pipeline_schema())
    doc["processors"][0]["config"]["on_error"] = "ignore"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, pipeline_schema())


def test_dataflare_schema_prints_it() -> None:
    result = CliRunner().invoke(main, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == pipeline_schema()
