"""Hostile or careless pipeline files get one located line, never a traceback or a hang.

A YAML alias bomb is refused before it expands; ``time_limit_s: .inf`` and
``--time-limit inf``, a non-UTF-8 file, a ``batch.size`` past its upper bound, a
negative generator rate or checkpoint interval: each is one line naming what is
wrong and where, never an OverflowError or UnicodeDecodeError.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml
from click.testing import CliRunner

from dataflare_host.cli._main import main

VALID = {
    "sources": [
        {
            "id": "in",
            "type": "plugin",
            "config": {"plugin_type": "generator", "connection": {"count": 3}},
        }
    ],
    "sinks": [{"id": "out", "type": "plugin", "config": {"plugin_type": "stdout"}}],
}

ALIAS_BOMB = (
    "\n".join(
        ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
        + [
            f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]"
            for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
        ]
    )
    + "\n"
)


class Done(NamedTuple):
    returncode: int
    stderr: str


def validate(path: Path) -> Done:
    """``dataflare validate PATH`` in-process (CliRunner): exit code and stderr."""
    result = CliRunner().invoke(main, ["validate", str(path)])
    return Done(result.exit_code, result.stderr)


def one_line(done: Done) -> str:
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_yaml_alias_bomb_is_refused_quickly_with_a_located_line(tmp_path: Path) -> None:
    """A billion-laughs document is refused in linear time, naming file and line."""
    path = tmp_path / "bomb.yaml"
    path.write_text(ALIAS_BOMB, encoding="utf-8")
    started = time.monotonic()
    line = one_line(validate(path))
    assert time.monotonic() - started < 30
    assert line.startswith(f"error: {path}:")
    assert "expands to more than 100,000 nodes" in line


def test_ordinary_aliases_still_work(tmp_path: Path) -> None:
    """Anchors that reuse a block (a connection, say) are fine."""
    path = tmp_path / "anchors.yaml"
    path.write_text(
        "generator: &gen {count: 2}\n"
        "sources:\n  - {id: in, type: plugin, config: {plugin_type: generator, connection: *gen}}\n"
        "sinks:\n  - {id: out, type: plugin, config: {plugin_type: stdout}}\n".replace(
            "generator: &gen", "x-shared: &gen"
        ),
        encoding="utf-8",
    )
    done = validate(path)
    # x-shared is not a pipeline key: the one error is about that key, not about aliases.
    assert "x-shared" in one_line(done)


def test_non_utf8_pipeline_file_is_one_located_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: caf\xe9\nsources: []\n")
    line = one_line(validate(path))
    assert line == f"error: {path}:1: not UTF-8 text (byte 0xe9); save the pipeline file as UTF-8"


@pytest.mark.parametrize(
    ("change", "where", "fragment"),
    [
        ({"batch": {"size": 1_000_000_000}}, "batch.size", "must be from 1 to 1,000,000"),
        ({"batch": {"size": 0}}, "batch.size", "must be from 1"),
        ({"checkpoint": {"interval_ms": -5}}, "checkpoint.interval_ms", "must be from 1"),
        ({"batch": {"linger_ms": -1}}, "batch.linger_ms", "must be from 0"),
        (
            {"address": "10.0.0.5:6379"},
            "address",
            "is the Ray cluster to join, but engine: is local; set engine: ray or remove",
        ),
        (
            {"address": "10.0.0.5:6379", "engine": "local"},
            "address",
            "but engine: is local",
        ),
    ],
)
def test_batch_and_checkpoint_bounds(
    tmp_path: Path, change: dict[str, object], where: str, fragment: str
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({**VALID, **change}), encoding="utf-8")
    line = one_line(validate(path))
    assert f": {where}: " in line
    assert fragment in line


@pytest.mark.parametrize(
    ("connection", "setting", "fragment"),
    [
        ({"rate": -1}, "rate", "rate must be a positive number"),
        ({"rate": float("inf")}, "rate", "rate must be a positive number"),
        ({"count": -3}, "count", "count must be 0 or more"),
    ],
)
def test_generator_settings_are_checked(
    tmp_path: Path, connection: dict[str, object], setting: str, fragment: str
) -> None:
    path = tmp_path / "p.yaml"
    doc = yaml.safe_load(yaml.safe_dump(VALID))
    doc["sources"][0]["config"]["connection"] = connection
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    line = one_line(validate(path))
    assert f"sources[0].config.connection.{setting}: " in line
    assert fragment in line


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "0", "1.0e+12"])
def test_infinite_or_absurd_time_limits_are_located_errors(
    tmp_path: Path, value: str
) -> None:
    plugin = tmp_path / "keep.py"
    plugin.write_text("import dataflare\n\n@dataflare.filter\ndef keep(r):\n    return True\n")
    doc = yaml.safe_load(yaml.safe_dump(VALID))
    doc["processors"] = [
        {
            "id": "p",
            "type": "plugin",
            "config": {"plugin_type": "filter", "plugin_path": "keep.py", "time_limit_s": "TIME"},
        }
    ]
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc).replace("TIME", value), encoding="utf-8")
    line = one_line(validate(path))
    assert "processors[0].config.time_limit_s: time limit must be a number of seconds" in line


@pytest.mark.parametrize("value", ["inf", "nan", "0", "-1"])
def test_cli_time_limit_inf_is_one_line(tmp_path: Path, value: str) -> None:
    plugin = tmp_path / "keep.py"
    plugin.write_text("import dataflare\n\n@dataflare.filter\ndef keep(r):\n    return True\n")
    result = CliRunner().invoke(main, ["test", str(plugin), "--text", "x", "--time-limit", value])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stderr.startswith("error: time limit must be a number of seconds")
