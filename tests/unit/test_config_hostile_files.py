"""Issue 24, items 3-6: secrets from ``${VAR}``, deep or huge YAML, and a failed run's output.

Each refusal is one line on stderr naming the file (and line), with no traceback;
a value that came from the environment is shown as the ``${VAR}`` written in the file.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from dataflare import ConfigurationError
from dataflare_host.cli._main import main
from dataflare_host.pipeline import load_pipeline_config
from dataflare_host.pipeline._yaml import MAX_BYTES, MAX_DEPTH, MAX_NODES, load_located

SECRET = "Sup3rS3cret"

BASE = """\
name: trusty
sources:
  - id: in
    type: plugin
    config:
      plugin_type: generator
      connection: {count: 3}
sinks:
  - id: out
    type: plugin
    config:
      plugin_type: file
      connection: {path: out.jsonl}
"""


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def validate(path: Path) -> Result:
    return CliRunner().invoke(main, ["validate", str(path)])


def one_line(result: Result, code: int = 2) -> str:
    """The single error line of a refused command; no traceback, nothing on stdout."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# -- item 3: a value interpolated from ${VAR} is shown as ${VAR} ---------------------


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("batch:\n  size: ${PGPW}\n", "batch.size: expected an integer, got '${PGPW}'"),
        ("batch:\n  linger_ms: ${PGPW}\n", "batch.linger_ms: expected an integer, got '${PGPW}'"),
        ("workers: x${PGPW}y\n", "workers:"),
    ],
)
def test_an_interpolated_value_is_shown_as_its_reference_in_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str, expected: str
) -> None:
    monkeypatch.setenv("PGPW", SECRET)
    line = one_line(validate(write(tmp_path, BASE + setting)))
    assert SECRET not in line
    assert expected in line


def test_an_interpolated_number_out_of_bounds_is_shown_as_its_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bound check formats numbers with separators; the value is still hidden."""
    monkeypatch.setenv("PGPW", "5000000")
    path = write(tmp_path, BASE + "batch:\n  size: ${PGPW}\n")
    with pytest.raises(ConfigurationError) as caught:
        load_pipeline_config(path)
    assert str(caught.value) == (
        f"{path}:15: batch.size: must be from 1 to 1,000,000, got ${{PGPW}}"
    )


def test_a_secret_inside_a_longer_value_is_hidden_in_connector_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection setting built from a secret: the connector's own error shows ${VAR}."""
    monkeypatch.setenv("PGPW", SECRET)
    text = BASE.replace("connection: {count: 3}", 'connection: {count: "n-${PGPW}-n"}')
    line = one_line(validate(write(tmp_path, text)))
    assert SECRET not in line
    assert "n-${PGPW}-n" in line


def test_a_value_written_in_the_file_is_still_shown(tmp_path: Path) -> None:
    """Only substituted values are hidden: a literal mistake is echoed so it can be fixed."""
    line = one_line(validate(write(tmp_path, BASE + "batch:\n  size: lots\n")))
    assert "batch.size: expected an integer, got 'lots'" in line


# -- items 4 and 5: depth and size are bounded before anything is built --------------


def test_deeply_nested_yaml_is_one_line_not_a_recursion_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[" * 100_000 + "]" * 100_000)
    line = one_line(validate(path))
    assert line == (
        f"error: {path}:1: nested more than {MAX_DEPTH} levels deep, the most a pipeline "
        "file may nest; flatten it"
    )


def test_nesting_within_the_bound_is_accepted(tmp_path: Path) -> None:
    """The bound counts levels: a document exactly MAX_DEPTH deep loads."""
    levels = MAX_DEPTH - 1  # the top-level mapping is the first level, the scalar none
    doc = load_located(write(tmp_path, "deep: " + "[" * levels + "1" + "]" * levels + "\n"))
    value = doc.data["deep"]
    for _ in range(levels - 1):
        value = value[0]
    assert value == [1]
    with pytest.raises(ConfigurationError, match="nested more than"):
        load_located(write(tmp_path, "deep: " + "[" * MAX_DEPTH + "1" + "]" * MAX_DEPTH + "\n"))


def test_a_file_over_the_size_bound_is_refused_before_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """400,000 keys in 9 MB: refused from the first read, naming the bound, not aliases."""
    path = tmp_path / "big.yaml"
    keys = "".join(f"key{i:07d}: value{i:07d}\n" for i in range(400_000))
    path.write_text(keys, encoding="utf-8")
    assert path.stat().st_size > 9_000_000
    composed: list[object] = []
    # The proof that it is refused cheaply: the YAML parser is never reached.
    monkeypatch.setattr(yaml.SafeLoader, "get_single_node", lambda self: composed.append(1))
    line = one_line(validate(path))
    assert composed == []
    assert line == (
        f"error: {path}: larger than {MAX_BYTES:,} bytes, the most a pipeline file may be; "
        "put data in a source, not in the pipeline file"
    )
    assert "alias" not in line


def test_many_values_under_the_size_bound_are_refused_without_blaming_aliases(
    tmp_path: Path,
) -> None:
    text = "values: [" + "1," * MAX_NODES + "1]\n"
    assert len(text) <= MAX_BYTES
    line = one_line(validate(write(tmp_path, text)))
    assert f"holds more than {MAX_NODES:,} nodes (keys and values)" in line, line
    assert "alias" not in line


# -- item 6: a run that fails before its engine starts prints no stray line ----------


def assert_no_stray_line(result: Result) -> None:
    assert "<member" not in result.stdout
    assert "<member" not in result.stderr
    assert "Traceback" not in result.output


def test_a_damaged_checkpoint_fails_the_run_without_a_stray_line(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "checkpoint: {path: cp.json}\n")
    (tmp_path / "cp.json").write_text("{garbage", encoding="utf-8")
    for flags in ([], ["--quiet"]):
        result = CliRunner().invoke(main, ["run", *flags, str(path)])
        assert result.exit_code == 1
        assert_no_stray_line(result)
        assert "cp.json cannot be used" in result.stderr
        assert "engine" not in result.stderr  # no engine started: none is named


def test_a_refused_connection_fails_the_run_without_a_stray_line(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    text = BASE.replace(
        "plugin_type: file\n      connection: {path: out.jsonl}",
        f"plugin_type: redis\n      connection: {{url: 'redis://127.0.0.1:{port}/0', stream: s}}",
    )
    result = CliRunner().invoke(main, ["run", "--quiet", str(write(tmp_path, text))])
    assert result.exit_code == 1, result.output
    assert_no_stray_line(result)
    assert "cannot connect" in result.stderr


def test_a_reference_inside_braces_gets_one_line_saying_how_to_write_it(tmp_path: Path) -> None:
    """`{size: ${N}}` is not YAML: the one line says why and what to write instead."""
    path = write(tmp_path, BASE + "batch: {size: ${PGPW}}\n")
    with pytest.raises(ConfigurationError) as caught:
        load_pipeline_config(path)
    assert str(caught.value).startswith(f"{path}:{BASE.count(chr(10)) + 1}: invalid YAML: ")
    assert str(caught.value).endswith(
        "a ${NAME} reference cannot stand inside { } or [ ]: write that mapping as indented lines"
    )
    plain = write(tmp_path, BASE + "batch: {size: [}\n")
    with pytest.raises(ConfigurationError) as caught:
        load_pipeline_config(plain)
    assert "${NAME}" not in str(caught.value)
