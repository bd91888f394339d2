"""Plugin packages, their dependencies, optional parameters, and `dataflare test` options.

Fast: nothing here builds a component (a refused dependency is refused before
componentize-py starts). tests/wasm/test_plugin_packages_wasm.py builds them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import EXAMPLES

import dataflare
from dataflare import ConfigurationError, Record
from dataflare.runtime import resolve_params
from dataflare_host.cli._main import main
from dataflare_host.plugins import load_plugin
from dataflare_host.wasm.build._cache import build_key
from dataflare_host.wasm.build._componentize import build_component, build_inputs
from dataflare_host.wasm.build._dependencies import bundled_files

PACKAGE = Path(__file__).parents[1] / "wasm" / "plugins" / "ranked_words"


@pytest.fixture
def package(tmp_path: Path) -> Path:
    """A private copy of the ranked_words package, free to edit."""
    copy = tmp_path / "ranked_words"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def run_cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


# -- packages natively ---------------------------------------------------------


def test_a_package_folder_runs_natively_with_its_helper_and_dependency(package: Path) -> None:
    with load_plugin(package, {"limit": "2"}) as plugin:
        result = plugin.process([Record(b"Pear, apple! fig", offset=4)])
    assert plugin.name == "ranked_words"
    assert [(r.value, r.offset, dict(r.metadata)) for r in result.outputs] == [
        (b"apple fig", 4, {"limited": "True"})
    ]


def test_a_package_is_found_by_name_in_the_plugins_folder(package: Path, tmp_path: Path) -> None:
    (tmp_path / "plugins").mkdir()
    package.rename(tmp_path / "plugins" / "ranked_words")
    with load_plugin("ranked_words", base_dir=tmp_path) as plugin:
        assert plugin.process([Record(b"b a")]).outputs[0].value == b"a b"


def test_a_changed_helper_module_is_imported_afresh(package: Path) -> None:
    from dataflare_host.plugins._native import ModuleCache

    modules = ModuleCache()
    first = load_plugin(package, modules=modules).process([Record(b"B a")]).outputs[0].value
    helper = package / "helpers.py"
    helper.write_text(helper.read_text().replace(".lower()", ".upper()"))
    second = load_plugin(package, modules=modules).process([Record(b"B a")]).outputs[0].value
    assert (first, second) == (b"a b", b"A B")


def test_a_folder_without_init_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigurationError, match=r"empty has no __init__\.py"):
        load_plugin(tmp_path / "empty")


# -- dependencies --------------------------------------------------------------


def test_a_pure_python_dependency_is_bundled_from_the_environment() -> None:
    files = bundled_files(["sortedcontainers>=2"], "pyproject.toml")
    staged = {str(relative) for _, relative in files}
    assert "sortedcontainers/__init__.py" in staged
    assert "sortedcontainers/sortedlist.py" in staged
    assert all(name.endswith((".py", ".typed")) for name in staged)
    assert all(source.is_file() for source, _ in files)


def test_a_dependency_with_c_extensions_is_refused_naming_it() -> None:
    with pytest.raises(ConfigurationError) as caught:
        bundled_files(["msgpack"], "my_plugin/pyproject.toml")
    message = str(caught.value)
    assert "\n" not in message
    assert "my_plugin/pyproject.toml: dependency 'msgpack'" in message
    assert "compiled C extensions (msgpack/_cmsgpack" in message
    assert "pure Python only" in message


def test_a_missing_dependency_is_refused_naming_it() -> None:
    with pytest.raises(ConfigurationError, match=r"dependency 'no-such-dist-xyz' is not installed"):
        bundled_files(["no-such-dist-xyz>=1"], "pyproject.toml")


def test_extras_only_requirements_of_a_dependency_are_not_bundled() -> None:
    # tenacity requires tornado, sphinx, ... only under extras: none of them comes along.
    staged = {relative.parts[0] for _, relative in bundled_files(["tenacity"], "p")}
    assert staged == {"tenacity"}


def test_build_refuses_a_c_extension_dependency_before_componentize_runs(package: Path) -> None:
    (package / "pyproject.toml").write_text(
        '[project]\nname = "x"\nversion = "0"\ndependencies = ["sortedcontainers", "msgpack"]\n'
    )
    with pytest.raises(ConfigurationError, match=r"dependency 'msgpack' cannot go into a WASM"):
        build_component(package, package.parent / "out.wasm")
    assert not (package.parent / "out.wasm").exists()


def test_the_build_key_covers_helpers_and_declared_dependencies(package: Path) -> None:
    staged = {str(relative) for _, relative in build_inputs(package)}
    assert {"dataflare_user_plugin/__init__.py", "dataflare_user_plugin/helpers.py"} <= staged
    assert "sortedcontainers/__init__.py" in staged
    before = build_key(package)
    (package / "helpers.py").write_text((package / "helpers.py").read_text() + "\n# changed\n")
    after_helper = build_key(package)
    (package / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "0"\n')
    after_dependencies = build_key(package)
    assert len({before, after_helper, after_dependencies}) == 3


# -- optional parameters ------------------------------------------------------


def test_an_optional_parameter_is_absent_unless_given() -> None:
    declared = {"limit": dataflare.OPTIONAL, "needle": None, "sep": ","}
    assert dict(resolve_params("p", declared, {"needle": "x"})) == {"needle": "x", "sep": ","}
    assert dict(resolve_params("p", declared, {"needle": "x", "limit": "3"})) == {
        "needle": "x",
        "sep": ",",
        "limit": "3",
    }
    with pytest.raises(ConfigurationError, match="needs parameter 'needle'"):
        resolve_params("p", declared, {"limit": "3"})


def test_a_package_plugin_reads_an_absent_optional_parameter_as_missing(package: Path) -> None:
    with load_plugin(package) as plugin:
        output = plugin.process([Record(b"c b a")]).outputs[0]
    assert (output.value, output.metadata["limited"]) == (b"a b c", "False")


def test_a_wrong_params_default_names_the_optional_spelling() -> None:
    with pytest.raises(TypeError, match=r"dataflare\.OPTIONAL"):

        @dataflare.filter(params={"x": 3})  # type: ignore[dict-item]
        def bad(record: Record) -> bool:
            return True


# -- dataflare test -------------------------------------------------------------


def test_format_json_prints_every_field_of_each_output(package: Path) -> None:
    code, out, err = run_cli("test", str(package), "--text", "b a", "--format", "json")
    assert (code, err) == (0, "")
    assert [json.loads(line) for line in out.splitlines()] == [
        {"value": "a b", "key": None, "timestamp": None, "metadata": {"limited": "False"},
         "offset": 0}
    ]


def test_format_json_shows_timestamps(tmp_path: Path) -> None:
    code, out, _ = run_cli(
        "test", str(EXAMPLES / "uppercase_map.py"), "--text", '{"ts": 5}',
        "--timestamp-field", "ts", "--format", "json",
    )
    assert code == 0
    assert json.loads(out)["timestamp"] == 5
    assert json.loads(out)["value"] == '{"TS": 5}'


def test_aggregate_initial_replaces_the_decorators_initial() -> None:
    args = ["test", str(EXAMPLES / "sum_aggregate.py"), "--text", '{"amount": 2}']
    code, default_out, _ = run_cli(*args)
    code2, out, err = run_cli(*args, "--aggregate-initial", "40")
    assert (code, code2, err) == (0, 0, "")
    assert (default_out.strip(), out.strip()) == ("2", "42")


def test_aggregate_initial_on_another_kind_is_one_error_line() -> None:
    code, out, err = run_cli(
        "test", str(EXAMPLES / "uppercase_map.py"), "--text", "a", "--aggregate-initial", "1"
    )
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert "is a map plugin: --aggregate-initial is for aggregate plugins only" in err


# -- initial: in YAML -------------------------------------------------------------


def _aggregate_pipeline(tmp_path: Path, extra: str, plugin: str = "sum_aggregate.py") -> Path:
    (tmp_path / "in.jsonl").write_text('{"amount": 2}\n{"amount": 3}\n')
    shutil.copy(EXAMPLES / plugin, tmp_path / plugin)
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        "name: sums\n"
        "sources:\n  - id: in\n    type: plugin\n"
        "    config: {plugin_type: file, connection: {path: in.jsonl}}\n"
        "processors:\n  - id: sum\n    type: plugin\n"
        f"    config: {{plugin_type: {'aggregate' if 'sum' in plugin else 'map'}, "
        f"plugin_path: {plugin}{extra}}}\n"
        "sinks:\n  - id: out\n    type: plugin\n"
        "    config: {plugin_type: file, connection: {path: out.jsonl}}\n"
    )
    return pipeline


def test_yaml_initial_starts_an_aggregate_from_it(tmp_path: Path) -> None:
    from dataflare_host.pipeline import Pipeline

    loaded = Pipeline.from_file(_aggregate_pipeline(tmp_path, ", initial: '40'"))
    try:
        summary = loaded.run(None)
    finally:
        loaded.close()
    assert summary.exit_code == 0, summary.error
    assert (tmp_path / "out.jsonl").read_text().split() == ["42", "45"]


def test_yaml_initial_on_a_map_is_a_located_error(tmp_path: Path) -> None:
    from dataflare_host.pipeline import Pipeline

    where = r"processors\[0\]\.config\.initial: only aggregate"
    with pytest.raises(ConfigurationError, match=where):
        Pipeline.from_file(_aggregate_pipeline(tmp_path, ", initial: '1'", "uppercase_map.py"))
