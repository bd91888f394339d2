"""``dataflare validate --connect`` opens every source and sink; an unreachable one is one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from dataflare_host.cli._main import main


def pipeline(tmp_path: Path, source: dict[str, object]) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "sources": [{"id": "in", "type": "plugin", "config": source}],
                "sinks": [
                    {
                        "id": "out",
                        "type": "plugin",
                        "config": {"plugin_type": "file", "connection": {"path": "out/x.jsonl"}},
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        (
            {
                "plugin_type": "postgres",
                "connection": {
                    "dsn": "host=127.0.0.1 port=1 user=u password=hunter2 dbname=d",
                    "table": "t",
                    "key_column": "id",
                },
            },
            "source 'in' cannot connect",
        ),
        (
            {
                "plugin_type": "redis",
                "connection": {
                    "url": "redis://127.0.0.1:1/0",
                    "stream": "s",
                    "group": "g",
                    "consumer": "c",
                },
            },
            "source 'in' cannot connect",
        ),
    ],
    ids=["postgres-wrong-port", "redis-down"],
)
def test_an_unreachable_server_is_one_line(
    tmp_path: Path, source: dict[str, object], fragment: str
) -> None:
    path = pipeline(tmp_path, source)
    plain = CliRunner().invoke(main, ["validate", str(path)])
    assert plain.exit_code == 0, plain.output  # without --connect nothing is opened
    result = CliRunner().invoke(main, ["validate", "--connect", str(path)])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert fragment in lines[0]
    assert "hunter2" not in result.stderr


def test_reachable_connectors_validate(tmp_path: Path) -> None:
    path = pipeline(tmp_path, {"plugin_type": "generator", "connection": {"count": 1}})
    result = CliRunner().invoke(main, ["validate", "--connect", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{path}: ok")
