"""A new Python plugin's component is the shared runtime plus its own files (issue 25: a first
WASM output in seconds): every such plugin maps the one compiled runtime, the guest sees its
files read-only and nothing else, and a plugin the runtime cannot load is built whole.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.components import ComponentBuilder

from dataflare import ConfigurationError, Record
from dataflare_host.plugins import load_plugin
from dataflare_host.testing import run_plugin
from dataflare_host.wasm.build._cache import shared_runtime
from dataflare_host.wasm.sandbox.child._wasmtime_engine import compile_key
from dataflare_host.wasm.sandbox.plugin_sources import split_sources

pytestmark = [pytest.mark.wasm, pytest.mark.slow]

FIRST = """\
import dataflare

@dataflare.map
def shout(record):
    return record.evolve(value=record.value.upper())
"""

SECOND = """\
import dataflare

@dataflare.filter
def short(record):
    return len(record.value) < 4
"""


def test_two_new_plugins_are_the_runtime_plus_their_files_and_map_one_compiled_artifact(
    component_builder: ComponentBuilder, tmp_path: Path
) -> None:
    (tmp_path / "shout.py").write_text(FIRST)
    (tmp_path / "short.py").write_text(SECOND)
    built = component_builder.many([tmp_path / "shout.py", tmp_path / "short.py"])
    runtime = shared_runtime().read_bytes()
    for source, component in built.items():
        data = component.read_bytes()
        length, sources = split_sources(data)
        assert data[:length] == runtime
        assert sources is not None
        assert sources.origin == source.name
        assert sources.files == (("dataflare_user_plugin.py", source.read_bytes()),)
    keys = {compile_key(component) for component in built.values()}
    assert len(keys) == 1  # one compiled artifact for both, the runtime's
    batch = [Record(b"ab", offset=0), Record(b"abcdef", offset=1)]
    shouted = run_plugin(built[tmp_path / "shout.py"], batch)
    assert [r.value for r in shouted.outputs] == [b"AB", b"ABCDEF"]
    kept = run_plugin(built[tmp_path / "short.py"], batch)
    assert [r.value for r in kept.outputs] == [b"ab"]


def test_the_guest_sees_its_own_files_read_only_and_nothing_else(
    component_builder: ComponentBuilder, tmp_path: Path
) -> None:
    plugin = tmp_path / "peek.py"
    plugin.write_text(
        """\
import json, os
import dataflare

@dataflare.map
def peek(record):
    try:
        with open("/plugin/planted.py", "w") as handle:
            handle.write("x = 1")
        wrote = "wrote"
    except OSError as exc:
        wrote = type(exc).__name__
    try:
        os.remove("/plugin/dataflare_user_plugin.py")
        removed = "removed"
    except OSError as exc:
        removed = type(exc).__name__
    try:
        with open("/etc/passwd") as handle:
            host = handle.read()[:10]
    except OSError as exc:
        host = type(exc).__name__
    return record.evolve(value=json.dumps(
        {"plugin": sorted(os.listdir("/plugin")), "host": host,
         "wrote": wrote, "removed": removed}).encode())
"""
    )
    component = component_builder(plugin)
    assert split_sources(component.read_bytes())[1] is not None  # on the shared runtime
    result = run_plugin(component, [Record(b"x", offset=0)])
    assert result.error is None
    seen = json.loads(result.outputs[0].value)
    assert seen["host"] == "FileNotFoundError"
    assert seen["plugin"] == [".dataflare-origin", "dataflare_user_plugin.py"]
    assert seen["wrote"] != "wrote"
    assert seen["removed"] != "removed"


def test_a_plugin_importing_a_module_outside_the_runtime_is_built_whole(
    component_builder: ComponentBuilder, tmp_path: Path
) -> None:
    """``colorsys`` is in the guest's stdlib but not imported by the runtime: the plugin gets
    a component of its own, which works as natively."""
    plugin = tmp_path / "hue.py"
    plugin.write_text(
        """\
import colorsys
import dataflare

@dataflare.map
def hue(record):
    return record.evolve(value=repr(colorsys.rgb_to_hsv(0.2, 0.4, 0.4)).encode())
"""
    )
    component = component_builder(plugin)
    assert split_sources(component.read_bytes())[1] is None
    result = run_plugin(component, [Record(b"x", offset=0)])
    native = run_plugin(plugin, [Record(b"x", offset=0)])
    assert result.error is None
    assert [r.value for r in result.outputs] == [r.value for r in native.outputs]


def test_every_instance_draws_its_own_random_numbers(
    component_builder: ComponentBuilder, tmp_path: Path
) -> None:
    """The runtime's memory is a snapshot taken once; ``random`` is reseeded when a plugin
    loads, so two instances do not repeat each other's numbers."""
    plugin = tmp_path / "draw.py"
    plugin.write_text(
        """\
import random
import dataflare

@dataflare.map
def draw(record):
    return record.evolve(value=str(random.getrandbits(64)).encode())
"""
    )
    component = component_builder(plugin)
    assert split_sources(component.read_bytes())[1] is not None
    draws = {run_plugin(component, [Record(b"x", offset=0)]).outputs[0].value for _ in range(3)}
    assert len(draws) == 3


def test_a_package_folder_rides_whole_with_its_modules(
    component_builder: ComponentBuilder, tmp_path: Path
) -> None:
    package = tmp_path / "regions"
    package.mkdir()
    (package / "table.py").write_text('NAMES = {"eu": "Europe"}\n')
    (package / "__init__.py").write_text(
        """\
import dataflare
from .table import NAMES

@dataflare.map
def region(record):
    return record.evolve(value=NAMES[record.value.decode()].encode())
"""
    )
    component = component_builder(package)
    sources = split_sources(component.read_bytes())[1]
    assert sources is not None
    assert sorted(name for name, _ in sources.files) == [
        "dataflare_user_plugin/__init__.py",
        "dataflare_user_plugin/table.py",
    ]
    result = run_plugin(component, [Record(b"eu", offset=0), Record(b"us", offset=1)])
    assert [r.value for r in result.outputs] == [b"Europe"]
    assert result.error is not None
    # The error names the author's folder and the raising line, as a whole build's does.
    assert "regions/__init__.py:6" in str(result.error)


def _planted(data: bytes) -> bytes:
    """The plugin's file renamed, at the same length, to one outside the folder."""
    at = data.rindex(b"dataflare_user_plugin.py")
    return data[:at] + b"../../../../../etc/xx.py" + data[at + 24 :]


@pytest.mark.parametrize(
    ("said", "garble"),
    [
        ("length is past the file", lambda data: data[:-4] + (len(data) + 9).to_bytes(4, "big")),
        ("names a file outside its folder", _planted),
    ],
)
def test_a_component_with_a_garbled_sources_section_is_one_line(
    component_builder: ComponentBuilder, tmp_path: Path, said: str, garble: object
) -> None:
    """A hostile or damaged component's sources section is refused before the guest starts."""
    (tmp_path / "shout.py").write_text(FIRST)
    data = component_builder(tmp_path / "shout.py").read_bytes()
    broken = tmp_path / "broken.wasm"
    broken.write_bytes(garble(data))  # type: ignore[operator]
    with pytest.raises(ConfigurationError) as caught:
        load_plugin(broken)
    message = str(caught.value)
    assert "\n" not in message
    assert f"{broken} is not a valid DataFlare component" in message
    assert said in message
