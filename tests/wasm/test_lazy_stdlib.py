"""Lazily imported stdlib modules behave the same in both runtimes.

The guest has no filesystem at run time: a module the stdlib imports on first
use (``_strptime`` for ``datetime.strptime``, ``encodings.idna`` for
``str.encode("idna")``, ``heapq`` for ``Counter.most_common``, ...) works only
if the build put it in the component. plugins/lazy_stdlib.py runs a table of
such calls; every row must give the same output natively and as WASM.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.components import ComponentBuilder

from dataflare import Record
from dataflare_host.testing import run_plugin

pytestmark = [pytest.mark.wasm, pytest.mark.slow]

PLUGIN = Path(__file__).parent / "plugins" / "lazy_stdlib.py"


def rows() -> list[str]:
    import importlib.util

    spec = importlib.util.spec_from_file_location("lazy_stdlib_table", PLUGIN)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.CASES)


def test_every_row_of_the_stdlib_table_matches_natively_and_in_the_guest(
    component_builder: ComponentBuilder,
) -> None:
    names = rows()
    assert {"strptime", "time_strptime", "idna", "cp1252", "shift_jis", "hex_codec",
            "counter_most_common", "email_parse"} <= set(names)
    batch = [Record(name.encode(), offset=i) for i, name in enumerate(names)]
    native = run_plugin(PLUGIN, batch)
    wasm = run_plugin(component_builder(PLUGIN), batch)
    assert native.error is None
    assert wasm.error is None
    native_rows = [r.value.decode() for r in native.outputs]
    wasm_rows = [r.value.decode() for r in wasm.outputs]
    # Natively every row works (a failing row reads "name: SomeError: ..."; a result is
    # a repr), else two equal failures would pass for parity.
    failed = re.compile(r"^\w+: \w+(Error|Exception): ")
    assert not [row for row in native_rows if failed.match(row)]
    differing = [(n, w) for n, w in zip(native_rows, wasm_rows, strict=True) if n != w]
    assert differing == []
    assert "strptime: '2024-03-05T10:11:12'" in wasm_rows
