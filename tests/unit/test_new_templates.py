"""``dataflare new`` templates: declared params, an ``@init`` hook, JSON values for the JSON
shape, and generated tests whose inputs are what the plugin really processes.

Natively only (no component is built here): tests/wasm/test_authoring.py builds the
default (JSON) templates and runs their native == WASM tests.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from support.pytest_runs import run_pytest

from dataflare import ConfigurationError, PluginKind, ProcessingError, Record
from dataflare_host.cli._main import main
from dataflare_host.cli._scaffold import SHAPES
from dataflare_host.plugins import load_plugin
from dataflare_host.plugins._native import import_plugin_module
from dataflare_host.testing import run_plugin

KINDS = [kind.value for kind in PluginKind]
CASES = [(kind, shape) for kind in KINDS for shape in SHAPES]
IDS = [f"{shape}-{kind}" for kind, shape in CASES]

# Shaped like the generator source's records, as the JSON templates' READMEs say.
SAMPLE = b'{"id":1,"status":"active","name":"user-000001","amount":42,"tags":["a","b"]}'


def plugin_file(root: Path, kind: str, shape: str) -> Path:
    return root / f"{shape}_{kind}" / f"{shape}_{kind}.py"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One project per kind and shape, made by the command line."""
    root = tmp_path_factory.mktemp("templates")
    runner = CliRunner()
    for kind, shape in CASES:
        result = runner.invoke(
            main,
            ["new", f"{shape}_{kind}", "--kind", kind, "--shape", shape, "--directory", str(root)],
        )
        assert result.exit_code == 0, result.output
    return root


def generated_tests(root: Path, kind: str, shape: str) -> ModuleType:
    """The generated test_NAME.py, imported as a module."""
    path = root / f"{shape}_{kind}" / f"test_{shape}_{kind}.py"
    spec = importlib.util.spec_from_file_location(f"generated_test_{shape}_{kind}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("kind", "shape"), CASES, ids=IDS)
def test_every_template_declares_params_and_prepares_them_in_an_init_hook(
    generated: Path, kind: str, shape: str
) -> None:
    """The hook declares the params and the plugin takes what it returns; the
    declaration is real: an undeclared name is refused at load."""
    file = plugin_file(generated, kind, shape)
    module = import_plugin_module(file)
    assert module.init is not None, f"{file} has no @init hook"
    assert module.init.params, f"{file}'s @init declares no params"
    assert module.definition.takes_context
    with pytest.raises(ConfigurationError, match="bogus"):
        load_plugin(file, {"bogus": "1"}).close()


@pytest.mark.parametrize("kind", KINDS)
def test_json_templates_turn_json_objects_into_json_values(generated: Path, kind: str) -> None:
    """On the README's sample (a generator-shaped object), every output is JSON."""
    result = run_plugin(plugin_file(generated, kind, "json"), [Record(SAMPLE)])
    assert result.error is None
    assert result.outputs, f"the {kind} template emits nothing for its own README's sample"
    for output in result.outputs:
        assert isinstance(json.loads(output.value), dict)


@pytest.mark.parametrize("kind", KINDS)
def test_json_templates_generated_inputs_are_json_objects(generated: Path, kind: str) -> None:
    """The generated tests' batches hold JSON objects only, and real batches (not all empty)."""
    strategy = generated_tests(generated, kind, "json").json_batches
    seen: list[int] = []

    @settings(max_examples=30, deadline=None, database=None)
    @given(batch=strategy)
    def every_value_is_a_json_object(batch: list[Record]) -> None:
        seen.append(len(batch))
        for record in batch:
            assert isinstance(json.loads(record.value), dict), record.value

    every_value_is_a_json_object()
    assert max(seen) >= 2


@pytest.mark.parametrize("kind", KINDS)
def test_json_parity_tests_run_on_the_json_inputs(generated: Path, kind: str) -> None:
    """A JSON plugin fails on arbitrary bytes at the first record, so a parity test on them
    would only compare two JSONDecodeErrors: the generated one is given the JSON batches."""
    plugin = plugin_file(generated, kind, "json")
    refused = run_plugin(plugin, [Record(b"not json"), Record(SAMPLE, offset=1)])
    assert isinstance(refused.error, ProcessingError)
    assert "JSONDecodeError" in str(refused.error)
    module = generated_tests(generated, kind, "json")
    calls: list[dict[str, Any]] = []
    check: Callable[..., None] = lambda *args, **kwargs: calls.append(kwargs)  # noqa: E731
    module.test_native_and_wasm_agree(check)
    assert len(calls) == 1
    assert calls[0]["batches"] is module.json_batches


def test_the_generated_projects_own_tests_pass_natively(generated: Path) -> None:
    """Every project's property test passes as generated (its parity test builds a
    component: tests/wasm/test_authoring.py runs those)."""
    conftest = generated / "conftest.py"  # fewer examples: this runs in the fast loop
    conftest.write_text(
        "from hypothesis import settings\n"
        "settings.register_profile('quick', max_examples=15, deadline=None)\n"
        "settings.load_profile('quick')\n"
    )
    try:
        done = run_pytest(
            "-p", "no:randomly", "-k", "not native_and_wasm", str(generated),
            cwd=generated, timeout_s=300,
        )
    finally:
        conftest.unlink()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert f"{len(CASES)} passed, {len(CASES)} deselected" in done.stdout


def test_json_is_the_default_shape(tmp_path: Path) -> None:
    runner = CliRunner()
    for folder, shape in (("default", []), ("json", ["--shape", "json"])):
        args = ["new", "p", "--kind", "map", *shape, "--directory", str(tmp_path / folder)]
        assert runner.invoke(main, args).exit_code == 0
    for name in ("p.py", "test_p.py", "README.md"):
        default, json_shape = (tmp_path / f / "p" / name for f in ("default", "json"))
        assert default.read_text() == json_shape.read_text(), name


def test_shape_is_refused_for_sources_and_sinks(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["new", "feed", "--kind", "source", "--shape", "json", "--directory", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "--shape applies to processor kinds" in result.stderr
    assert not (tmp_path / "feed").exists()
