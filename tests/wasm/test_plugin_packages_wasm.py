"""A plugin package (helper module, declared pure-Python dependency, an optional
parameter) builds, and runs natively and as WASM with identical output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.components import ComponentBuilder
from support.paths import EXAMPLES

from dataflare import Record
from dataflare_host.cli._main import main
from dataflare_host.testing import describe_difference, run_plugin

pytestmark = [pytest.mark.wasm, pytest.mark.slow]

PACKAGE = Path(__file__).parent / "plugins" / "ranked_words"
BATCH = [
    Record(b"Pear, apple! fig", key=b"k", timestamp=7, metadata={"m": "1"}, offset=0),
    Record(b"zeta alpha", offset=1),
    Record(b"", offset=2),
]


@pytest.mark.parametrize("params", [{}, {"limit": "1"}, {"separator": "|", "limit": "5"}])
def test_the_package_gives_identical_results_in_both_runtimes(
    component_builder: ComponentBuilder, params: dict[str, str]
) -> None:
    component = component_builder(PACKAGE)
    native = run_plugin(PACKAGE, BATCH, params)
    wasm = run_plugin(component, BATCH, params)
    assert native.error is None
    assert describe_difference(native, wasm) is None
    assert len(native.outputs) == 3


def test_the_optional_parameter_is_absent_in_the_guest_too(
    component_builder: ComponentBuilder,
) -> None:
    outputs = run_plugin(component_builder(PACKAGE), BATCH[:1]).outputs
    assert (outputs[0].value, outputs[0].metadata["limited"]) == (b"apple fig pear", "False")
    limited = run_plugin(component_builder(PACKAGE), BATCH[:1], {"limit": "1"}).outputs
    assert (limited[0].value, limited[0].metadata["limited"]) == (b"apple", "True")


def test_dataflare_test_wasm_on_a_package_folder_agrees(
    component_builder: ComponentBuilder,
) -> None:
    component_builder(PACKAGE)  # cached: the CLI reuses it
    result = CliRunner().invoke(
        main, ["test", str(PACKAGE), "--text", "b a", "--wasm", "--format", "json"]
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["value"] == "a b"
    assert "native and WASM agree on 1 record(s)" in result.stderr


def test_aggregate_initial_is_the_same_in_both_runtimes(
    component_builder: ComponentBuilder,
) -> None:
    component_builder(EXAMPLES / "sum_aggregate.py")
    result = CliRunner().invoke(
        main,
        ["test", str(EXAMPLES / "sum_aggregate.py"), "--text", '{"amount": 2}', "--wasm",
         "--aggregate-initial", "40"],
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "42"
