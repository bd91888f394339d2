"""A component names the same plugin file and line as the native run, shows the same plugin
frames, and package folders named from YAML build and run as WASM (issue 25, acceptance 3, 4)."""

from __future__ import annotations

from pathlib import Path

import pytest
from authoring_fixtures import write_flat, write_package, write_pipeline
from click.testing import CliRunner
from support.components import ComponentBuilder

from dataflare import Record
from dataflare_host.cli._main import main
from dataflare_host.pipeline._runner import Pipeline
from dataflare_host.plugins import load_plugin

pytestmark = [pytest.mark.wasm, pytest.mark.slow]

BATCH = [Record(b"1", offset=1), Record(b"x", offset=2)]


def both_errors(source: Path, component: Path, batch: list[Record]) -> tuple[object, object]:
    with load_plugin(source) as native, load_plugin(component) as wasm:
        return native.process(batch).error, wasm.process(batch).error


def test_a_flat_plugin_names_the_same_line_in_both_runtimes(
    component_builder: ComponentBuilder, tmp_path: Path
) -> None:
    plugin, line = write_flat(tmp_path)
    native, wasm = both_errors(plugin, component_builder(plugin), BATCH)
    assert native is not None
    assert wasm is not None
    assert native.fields() == wasm.fields()  # type: ignore[attr-defined]
    assert wasm.location == f"parse_amount.py:{line}"  # type: ignore[attr-defined]
    assert f"(parse_amount.py:{line}): ValueError" in str(wasm)
    # The source lines too: the build kept them, the sandbox cannot read them.
    assert "return int(text)" in (wasm.frames or "")  # type: ignore[attr-defined]


def test_a_package_plugin_names_the_same_module_line_in_both_runtimes(
    component_builder: ComponentBuilder, tmp_path: Path
) -> None:
    package, line = write_package(tmp_path)
    batch = [Record(b"2", offset=0), Record(b"-5", offset=1)]
    native, wasm = both_errors(package, component_builder(package), batch)
    assert native is not None
    assert wasm is not None
    assert native.fields() == wasm.fields()  # type: ignore[attr-defined]
    assert wasm.location == f"myplugin/rules.py:{line}"  # type: ignore[attr-defined]


def test_dash_v_shows_the_plugins_frames_for_the_component(
    component_builder: ComponentBuilder, tmp_path: Path
) -> None:
    plugin, line = write_flat(tmp_path)
    wasm = tmp_path / "parse_amount.wasm"
    wasm.write_bytes(component_builder(plugin).read_bytes())
    result = CliRunner().invoke(main, ["-v", "test", str(wasm), "--text", "x"])
    assert result.exit_code == 1
    assert f"(parse_amount.py:{line}): ValueError" in result.stderr
    assert f'File "parse_amount.py", line {line}, in _amount' in result.stderr
    assert "_guest" not in result.stderr
    assert "_dispatch" not in result.stderr


@pytest.mark.parametrize("written", ["myplugin", "myplugin/", "myplugin/__init__.py"])
def test_a_package_folder_runs_as_wasm_from_yaml(
    component_builder: ComponentBuilder, tmp_path: Path, written: str
) -> None:
    package, _ = write_package(tmp_path)
    component_builder(package)  # the pipeline's build is then a cache hit
    file = write_pipeline(tmp_path, written, ["1", "21"], wasm=True)
    pipeline = Pipeline.from_file(file)
    try:
        summary = pipeline.run(None, handle_signals=False)
    finally:
        pipeline.close()
    assert summary.status == "completed", summary.error
    assert (tmp_path / "out.jsonl").read_text().splitlines() == ["2", "42"]
