"""A raising plugin's error names its file and line; -v shows its own frames; a flat file
importing a sibling module is told to become a package folder; package folders from YAML.

Native only: tests/wasm/test_located_errors_wasm.py checks that a component says the same.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
from authoring_fixtures import write_flat, write_package, write_pipeline
from click.testing import CliRunner

from dataflare import ConfigurationError, ProcessingError, Record
from dataflare_host.cli._main import main
from dataflare_host.pipeline._runner import Pipeline
from dataflare_host.pipeline.engines._wire import _error, _error_back
from dataflare_host.plugins import load_plugin
from dataflare_host.wasm import build_component


def failure(plugin: Path | str, value: bytes) -> ProcessingError:
    with load_plugin(plugin) as loaded:
        result = loaded.process([Record(b"1", offset=1), Record(value, offset=2)])
    assert result.error is not None
    return result.error


def test_the_error_names_the_flat_file_and_the_raising_line(tmp_path: Path) -> None:
    """The innermost frame in the plugin's file is the helper's line, not the caller's."""
    plugin, line = write_flat(tmp_path)
    error = failure(plugin, b"x")
    assert error.location == f"parse_amount.py:{line}"
    assert str(error).startswith(
        f"plugin 'parse_amount' (map) failed at record offset 2 (parse_amount.py:{line}): "
        "ValueError: invalid literal"
    )


def test_the_frames_are_the_plugins_own_outermost_first(tmp_path: Path) -> None:
    plugin, line = write_flat(tmp_path)
    frames = failure(plugin, b"x").frames
    assert frames is not None
    assert frames.splitlines() == [
        '  File "parse_amount.py", line 10, in parse_amount',
        "    value = _amount(record.value.decode())",
        f'  File "parse_amount.py", line {line}, in _amount',
        '    return int(text)  # raises for "x"',
    ]
    assert str(tmp_path) not in frames  # relative names, the same in a component


def test_a_package_error_names_the_module_inside_the_folder(tmp_path: Path) -> None:
    package, line = write_package(tmp_path)
    error = failure(package, b"-3")
    assert error.location == f"myplugin/rules.py:{line}"
    assert error.frames is not None
    assert '"myplugin/__init__.py", line 8, in myplugin' in error.frames
    assert error.error_message == "negative amount -3"


def test_a_wrong_return_has_no_plugin_line(tmp_path: Path) -> None:
    """The SDK refused the return value: no plugin frame raised, so no location."""
    plugin = tmp_path / "wrong.py"
    plugin.write_text("import dataflare\n\n@dataflare.map\ndef wrong(record):\n    return 3\n")
    error = failure(plugin, b"x")
    assert (error.location, error.frames) == (None, None)
    assert "failed at record offset 1: TypeError" in str(error)


def test_location_and_frames_survive_pickling_and_the_worker_wire(tmp_path: Path) -> None:
    plugin, _ = write_flat(tmp_path)
    error = failure(plugin, b"x")
    assert pickle.loads(pickle.dumps(error)).fields() == error.fields()
    assert _error_back(_error(error)) == error


def test_dash_v_prints_the_plugins_frames_and_not_the_hosts(tmp_path: Path) -> None:
    plugin, line = write_flat(tmp_path)
    quiet = CliRunner().invoke(main, ["test", str(plugin), "--text", "x"])
    verbose = CliRunner().invoke(main, ["-v", "test", str(plugin), "--text", "x"])
    assert quiet.exit_code == verbose.exit_code == 1
    assert "File " not in quiet.stderr
    assert f"(parse_amount.py:{line}): ValueError" in quiet.stderr
    assert f'File "parse_amount.py", line {line}, in _amount' in verbose.stderr
    assert "_dispatch" not in verbose.stderr
    assert "dataflare_host" not in verbose.stderr


def build_for_wasm(plugin: Path) -> object:
    # The import is found in the source: nothing is componentized.
    return build_component(plugin, plugin.with_suffix(".wasm"))


@pytest.mark.parametrize("runtime", [load_plugin, build_for_wasm], ids=["native", "wasm-build"])
def test_a_flat_file_importing_a_sibling_is_told_to_use_a_package(
    tmp_path: Path, runtime: Callable[[Path], object]
) -> None:
    (tmp_path / "regions.py").write_text("NAMES = {}\n")
    plugin = tmp_path / "tag_region.py"
    plugin.write_text(
        "import dataflare\nimport regions\n\n@dataflare.map\ndef tag_region(record):\n"
        "    return record\n"
    )
    with pytest.raises(ConfigurationError) as caught:
        runtime(plugin)
    message = str(caught.value)
    assert "No module named 'regions'" in message
    assert "'regions' is a module beside tag_region.py" in message
    assert "tag_region/__init__.py" in message
    assert "from . import regions" in message
    if runtime is build_for_wasm:
        assert "imported at tag_region.py:2" in message
        assert not plugin.with_suffix(".wasm").exists()


def test_a_missing_dependency_gets_no_package_hint(tmp_path: Path) -> None:
    plugin = tmp_path / "needs.py"
    plugin.write_text("import dataflare\nimport not_installed_anywhere\n")
    with pytest.raises(ConfigurationError) as caught:
        load_plugin(plugin)
    assert "package folder" not in str(caught.value)


# -- package folders named from YAML ---------------------------------------------------


def run_pipeline(file: Path) -> list[str]:
    pipeline = Pipeline.from_file(file)
    try:
        summary = pipeline.run(None, handle_signals=False)
    finally:
        pipeline.close()
    assert summary.status == "completed"
    return (file.parent / "out.jsonl").read_text().splitlines()


@pytest.mark.parametrize("written", ["myplugin", "myplugin/", "myplugin/__init__.py"])
def test_a_package_folder_runs_from_yaml(tmp_path: Path, written: str) -> None:
    write_package(tmp_path)
    file = write_pipeline(tmp_path, written, ["1", "21"], wasm=False)
    assert run_pipeline(file) == ["2", "42"]


def test_a_yaml_error_in_a_package_names_the_module_line(tmp_path: Path) -> None:
    _, line = write_package(tmp_path)
    file = write_pipeline(tmp_path, "myplugin", ["1", "-1"], wasm=False)
    pipeline = Pipeline.from_file(file)
    try:
        summary = pipeline.run(None, handle_signals=False)
    finally:
        pipeline.close()
    assert summary.status == "failed"
    assert f"(myplugin/rules.py:{line}): ValueError: negative amount -1" in (summary.error or "")


def test_a_folder_without_init_is_refused_at_its_yaml_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    file = write_pipeline(tmp_path, "empty", ["1"], wasm=False)
    with pytest.raises(ConfigurationError, match=r"plugin_path.*has no __init__\.py"):
        Pipeline.from_file(file)


def test_a_wasm_file_without_plugin_source_wasm_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.wasm").write_bytes(b"\0asm")
    file = write_pipeline(tmp_path, "x.wasm", ["1"], wasm=False)
    with pytest.raises(ConfigurationError, match="for a component set plugin_source: wasm"):
        Pipeline.from_file(file)


def test_dash_v_run_prints_the_plugins_frames(tmp_path: Path) -> None:
    """A failed pipeline run with -v logs the plugin's frames before its error line."""
    _, line = write_package(tmp_path)
    file = write_pipeline(tmp_path, "myplugin", ["1", "-1"], wasm=False)
    result = CliRunner().invoke(main, ["-v", "run", "--quiet", str(file)])
    assert result.exit_code == 1
    assert f'File "myplugin/rules.py", line {line}, in doubled' in result.stderr
    assert f"(myplugin/rules.py:{line}): ValueError: negative amount -1" in result.stderr
    assert "_runner" not in result.stderr
