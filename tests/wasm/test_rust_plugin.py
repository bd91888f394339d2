"""A plugin written in Rust (guest_examples/rust) is a DataFlare plugin like any other.

The crate implements ``wit/plugin.wit`` with wit-bindgen and nothing of the
Python SDK, as a twin of ``guest_examples/contains_filter.py``. Together these
tests are the contract's language-neutrality check: on the same generated batch
the Rust component, the Python twin natively and the Python twin as a component
give the same result; the Rust component describes itself as its twin does,
runs in a YAML pipeline and under ``dataflare test``, refuses parameters by the
SDK's rule and words, and answers a broken framing with ``call-error``, never a
trap. The crate is built once per session into the test cache (cargo rebuilds
nothing when it has not changed); without cargo these tests are skipped, except in CI
(where set-up installs it), where they fail.
"""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import attrs
import pytest
import wasmtime
from hypothesis import example, given, settings
from hypothesis import strategies as st
from support.components import ComponentBuilder
from support.output import without_progress
from support.paths import EXAMPLES, TEST_CACHE
from support.pipeline_files import write_one_processor_pipeline
from support.records import any_timestamps, as_dict, holding_parses
from support.rust_build import build_rust_component, require_cargo
from wasmtime import component as wc

from dataflare import ConfigurationError, Record
from dataflare.runtime import (
    Dispatcher,
    decode_kept,
    encode_request,
    find_plugin,
)
from dataflare_host import Plugin, load_plugin
from dataflare_host.plugins._wasm import WasmPlugin
from dataflare_host.testing import batches, describe_difference, records, run_pipeline
from dataflare_host.wasm.build._wit import WIT_INTERFACE

pytestmark = pytest.mark.wasm

TWIN = EXAMPLES / "contains_filter.py"
DATAFLARE = Path(sys.executable).parent / "dataflare"
RUST_ORIGIN = "guest_examples/rust/src/lib.rs"  # what the crate's describe reports


@pytest.fixture(scope="session")
def rust_component() -> Path:
    """The Rust crate built to a component (cargo, release, into the test cache)."""
    require_cargo()
    build = build_rust_component(TEST_CACHE / "rust-target")
    assert build.component.is_file(), f"cargo succeeded but {build.component} is missing"
    return build.component


@pytest.fixture(scope="session")
def twin_component(component_builder: ComponentBuilder) -> Path:
    """The Python twin built to a component (cached by content, like every example)."""
    return component_builder(TWIN)


# -- parity: Rust component == Python twin natively == Python twin as a component ---------

# The needle's pieces and neighbours: its own bytes, parts of it, the two bytes of
# "é" apart, NUL and the Latin-1 upper half the text framing must carry intact.
PIECES = st.binary(max_size=12) | st.sampled_from(
    [b"error", b"erro", b"ro", b"r", "é".encode(), b"\xc3", b"\xa9", b"\x00", b"\xff", b""]
)
VALUES = st.lists(PIECES, max_size=4).map(b"".join)
# Every column at its extremes: INT64 timestamps, binary keys, Unicode metadata.
FULL_RECORDS = records(
    VALUES,
    keys=st.none() | st.binary(max_size=8),
    timestamps=any_timestamps,
    metadata=st.dictionaries(st.text(max_size=6), st.text(max_size=10), max_size=3),
)
BATCHES = st.integers(min_value=0, max_value=2**62).flatmap(
    lambda first: (
        batches(records=FULL_RECORDS, first_offset=first, max_size=40)
        # Values only: the writer leaves the key, timestamp and metadata columns out.
        | batches(VALUES, first_offset=first, max_size=40)
    )
)

NEEDLES = [{}, {"needle": "ro"}, {"needle": "é"}, {"needle": ""}, {"needle": "\x00\xff"}]


class Trio(NamedTuple):
    native: Plugin
    python_wasm: Plugin
    rust: Plugin

    def assert_agree(self, batch: list[Record]) -> None:
        """The three results of ``batch``, field by field (errors included)."""
        expected = self.native.process(batch)
        for name, plugin in (
            ("the Python twin's component", self.python_wasm),
            ("the Rust component", self.rust),
        ):
            difference = describe_difference(expected, plugin.process(batch))
            assert difference is None, f"{name} differs from the native twin:\n{difference}"


@pytest.fixture(
    scope="module", params=NEEDLES, ids=lambda p: f"needle={p['needle']!r}" if p else "default"
)
def trio(
    request: pytest.FixtureRequest, rust_component: Path, twin_component: Path
) -> Iterator[Trio]:
    """The twin natively, the twin as a component and the Rust component, same params."""
    params: dict[str, str] = request.param
    loaded = Trio(
        load_plugin(TWIN, params),
        load_plugin(twin_component, params),
        load_plugin(rust_component, params),
    )
    yield loaded
    for plugin in loaded:
        plugin.close()


@given(batch=BATCHES)
@example(batch=[])
@example(
    batch=[Record(b"an error", key=b"", timestamp=-(2**63), metadata={"": ""}, offset=2**63 - 1)]
)
def test_rust_plugin_agrees_with_its_python_twin(trio: Trio, batch: list[Record]) -> None:
    trio.assert_agree(batch)


def test_a_large_batch_agrees(trio: Trio) -> None:
    """Lengths past 255 and 65535 (every byte of the u32 fields), thousands of records."""
    big = [
        Record(
            bytes((i * 7 + j) % 256 for j in range(i % 700)) + (b"error" if i % 3 else b"r\xc3o"),
            key=None if i % 4 == 0 else str(i).encode() * (i % 90),
            timestamp=None if i % 5 == 0 else i * 1_000 - 2**40,
            metadata={} if i % 2 else {"n": str(i), "é": "ü" * (i % 9)},
            offset=10**12 + i,
        )
        for i in range(4_000)
    ]
    big.append(Record(b"x" * 70_000 + b"error" + "é".encode(), offset=10**12 + 4_000))
    trio.assert_agree(big)


def test_describe_reports_what_the_twin_reports(rust_component: Path, twin_component: Path) -> None:
    """Name, kind, params, initial, emit, look-back and window: all but who built it, and
    the parsed column, which only the Python guest reads."""
    rust, twin = load_plugin(rust_component), load_plugin(twin_component)
    try:
        assert isinstance(rust, WasmPlugin)
        assert isinstance(twin, WasmPlugin)
        rust_info, twin_info = rust.info, twin.info
    finally:
        rust.close()
        twin.close()
    assert rust_info.sdk_version.startswith("rust-")
    assert rust_info.origin == RUST_ORIGIN
    assert (rust_info.parsed_json, twin_info.parsed_json) == (False, True)
    assert attrs.evolve(rust_info, sdk_version="", origin="", parsed_json=False) == attrs.evolve(
        twin_info, sdk_version="", origin="", parsed_json=False
    )


def test_records_holding_a_hosts_parse_reach_the_rust_guest_without_the_parsed_column(
    rust_component: Path,
) -> None:
    """The host sends the parsed column only to a guest that asks (the Rust framing reader
    refuses flag bit 4): records a JSONL source parsed run through Rust as any others."""
    values = [b'{"m": "an error"}', b'{"m": "fine"}', b'{"m": "error 2"}']
    batch = holding_parses(values, [json.loads(v) for v in values])
    plugin = load_plugin(rust_component, {"needle": "error"})
    try:
        result = plugin.process(batch)
    finally:
        plugin.close()
    assert result.error is None
    assert [r.value for r in result.outputs] == [values[0], values[2]]


# -- pipelines and the CLI ----------------------------------------------------------------


def test_runs_in_a_pipeline_from_yaml(
    tmp_path: Path, rust_component: Path, twin_component: Path
) -> None:
    """A .wasm path as a processor: the same records reach the sink as with the twin."""
    inputs = [
        Record(b"an error"),
        Record(b"all good", key=b"k"),
        Record("\u00e9 error".encode(), key=b"k", timestamp=5, metadata={"h": "\u00e9"}),
        Record(b"\xff\x00ro", timestamp=-1),
    ]
    outputs = {}
    for name, path, source in (
        ("rust", rust_component, "wasm"),
        ("twin-native", TWIN, None),
        ("twin-wasm", twin_component, "wasm"),
    ):
        config: dict[str, Any] = {"plugin_type": "filter", "plugin_path": str(path)}
        if source is not None:
            config["plugin_source"] = source
        for needle in ("error", "ro"):
            pipeline = write_one_processor_pipeline(
                tmp_path / f"{name}-{needle}.yaml", {**config, "params": {"needle": needle}}
            )
            result = run_pipeline(pipeline, {"in": inputs})
            outputs[name, needle] = [as_dict(r) for r in result.outputs["out"]]
    assert [r["value"] for r in outputs["rust", "error"]] == [b"an error", "\u00e9 error".encode()]
    assert [r["value"] for r in outputs["rust", "ro"]] == [
        b"an error",
        "\u00e9 error".encode(),
        b"\xff\x00ro",
    ]
    for needle in ("error", "ro"):
        assert (
            outputs["rust", needle]
            == outputs["twin-native", needle]
            == outputs["twin-wasm", needle]
        )


class Run(NamedTuple):
    exit_code: int
    stdout: bytes
    stderr: str


def dataflare(*args: str | Path, cwd: Path | None = None) -> Run:
    """The installed console script, in a subprocess."""
    done = subprocess.run(
        [str(DATAFLARE), *map(str, args)], capture_output=True, timeout=120, check=False, cwd=cwd
    )
    return Run(
        done.returncode, done.stdout, without_progress(done.stderr.decode("utf-8", "replace"))
    )


def test_dataflare_run_a_yaml_with_the_rust_component(tmp_path: Path, rust_component: Path) -> None:
    """The real command on a pipeline file: generator -> Rust filter -> stdout, as the twin."""
    printed: dict[tuple[str, str], bytes] = {}
    for name, path, source in (
        ("rust", rust_component, {"plugin_source": "wasm"}),
        ("twin", TWIN, {}),
    ):
        for needle in ("user-000000", "no such text"):
            # A folder per run: the checkpoint beside the file must not carry over.
            folder = tmp_path / f"{name}-{len(printed)}"
            folder.mkdir()
            pipeline = write_one_processor_pipeline(
                folder / "pipeline.yaml",
                {
                    "plugin_type": "filter",
                    "plugin_path": str(path),
                    **source,
                    "params": {"needle": needle},
                },
            )
            run = dataflare("run", pipeline, cwd=folder)
            assert run.exit_code == 0, run.stderr
            printed[name, needle] = run.stdout
    assert b"user-000000" in printed["rust", "user-000000"]
    assert b"user-" not in printed["rust", "no such text"]
    assert printed["rust", "user-000000"] == printed["twin", "user-000000"]
    assert printed["rust", "no such text"] == printed["twin", "no such text"]


CLI_CASES = [
    pytest.param(
        ["an error", "fine", "errors \u00e9\u00fc"],
        [],
        "an error\nerrors \u00e9\u00fc\n",
        id="default-needle",
    ),
    pytest.param(
        ["an error", "a warning", "\u00e9t\u00e9"],
        ["-e", "needle=\u00e9"],
        "\u00e9t\u00e9\n",
        id="needle-e",
    ),
    pytest.param(["x", "", "error"], ["-e", "needle="], "x\n\nerror\n", id="empty-keeps-all"),
    pytest.param(
        ["warn", "an error"],
        ["-e", "needle=warn", "-e", "needle=error"],
        "an error\n",
        id="last-wins",
    ),
]


@pytest.mark.parametrize(("lines", "params", "printed"), CLI_CASES)
def test_dataflare_test_prints_what_the_twin_prints(
    rust_component: Path, twin_component: Path, lines: list[str], params: list[str], printed: str
) -> None:
    """The kept lines, exactly as the twin's source and the twin's component print them."""
    texts = [arg for line in lines for arg in ("--text", line)]
    rust = dataflare("test", rust_component, *texts, *params)
    assert rust == Run(0, printed.encode(), "")
    for twin in (TWIN, twin_component):
        assert dataflare("test", twin, *texts, *params) == rust


def test_an_unknown_param_is_refused_with_one_line(
    rust_component: Path, twin_component: Path
) -> None:
    """Exit 2 and the SDK's sentence naming the component, exactly as for the twin's."""
    rust = dataflare("test", rust_component, "--text", "x", "-e", "neddle=x")
    twin = dataflare("test", twin_component, "--text", "x", "-e", "neddle=x")
    assert rust.exit_code == twin.exit_code == 2
    assert rust.stdout == b""
    assert rust.stderr.splitlines() == [
        f"error: plugin 'contains' ({rust_component}) has no parameter 'neddle' "
        "(did you mean 'needle'?); it takes: needle"
    ]
    assert rust.stderr.replace(str(rust_component), "<c>") == twin.stderr.replace(
        str(twin_component), "<c>"
    )


# -- the component itself, called without the host -------------------------------------


class Guest:
    """The Rust component instantiated directly: what any host would see of it."""

    def __init__(self, path: Path) -> None:
        engine = wasmtime.Engine()
        linker = wc.Linker(engine)
        linker.add_wasip2()
        self.store = wasmtime.Store(engine)
        self.store.set_wasi(wasmtime.WasiConfig())
        self.instance = linker.instantiate(self.store, wc.Component.from_file(engine, str(path)))
        self.interface = self.instance.get_export_index(self.store, WIT_INTERFACE)
        assert self.interface is not None, f"{path} does not export {WIT_INTERFACE}"

    def call(self, name: str, *args: Any) -> Any:
        """The export's result; a trap raises wasmtime's error (a test failure)."""
        index = self.instance.get_export_index(self.store, name, self.interface)
        assert index is not None, f"no {name!r} export"
        func = self.instance.get_func(self.store, index)
        assert func is not None, name
        result = func(self.store, *args)
        func.post_return(self.store)
        return result


@pytest.fixture
def guest(rust_component: Path) -> Guest:
    return Guest(rust_component)


def test_exports_of_other_kinds_are_unsupported_as_in_the_python_shim(guest: Guest) -> None:
    """The shim's call-errors, word for word; look-back without a hook consumes everything."""
    assert _error(guest.call("filter", "")) == (
        "unsupported",
        "init must be called before any batch",
    )
    assert _error(guest.call("look-back", "")) == (
        "unsupported",
        "init must be called before look-back",
    )
    assert guest.call("init", []) is None
    for export, kind, args in (
        ("map", "map", ("",)),
        ("filter-map", "filter_map", ("",)),
        ("array-map", "array_map", ("",)),
        ("aggregate", "aggregate", ("", None)),
    ):
        assert _error(guest.call(export, *args)) == (
            "unsupported",
            f"plugin 'contains' is a filter plugin, not a {kind} plugin",
        )
    batch = encode_request([Record(b"a"), Record(b"b", offset=1)]).decode("latin-1")
    look_back = guest.call("look-back", batch)
    assert (look_back.consumed, look_back.accumulator, look_back.error) == (2, None, None)


@pytest.mark.parametrize(
    "given",
    [
        [("neddle", "x")],
        [("zzz", "1"), ("limit", "2")],
        [("dataflare.bogus", "1")],
        [("dataflare.window", "{}")],
    ],
    ids=["near-miss", "first-sorted", "reserved", "window-on-a-filter"],
)
def test_init_refuses_params_in_the_sdks_words(guest: Guest, given: list[tuple[str, str]]) -> None:
    """The component's own check (the host checks first) says what the SDK says.

    The oracle is the SDK itself: the twin's plugin, given the Rust crate's origin,
    initialised by the Dispatcher both Python runtimes use.
    """
    twin = find_plugin(runpy.run_path(str(TWIN)), RUST_ORIGIN)
    with pytest.raises(ConfigurationError) as refused:
        Dispatcher(twin, dict(given))
    assert _error(guest.call("init", given)) == ("configuration", str(refused.value))


@pytest.fixture(scope="module")
def initialised_guest(rust_component: Path) -> Guest:
    """One initialised instance for the property below (instantiating costs ~0.1 s)."""
    guest = Guest(rust_component)
    assert guest.call("init", []) is None
    return guest


@settings(deadline=None, max_examples=200)
@given(
    batch=batches(records=FULL_RECORDS, max_size=5),
    cut=st.integers(min_value=0),
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(1, 255)), max_size=3),
)
def test_a_broken_framing_is_a_serialization_error_never_a_trap(
    initialised_guest: Guest, batch: list[Record], cut: int, flips: list[tuple[int, int]]
) -> None:
    """Truncated frames are refused; corrupted ones refused or read, but never a trap."""
    guest = initialised_guest
    frame = bytearray(encode_request(batch))
    whole = guest.call("filter", frame.decode("latin-1"))  # the host's own frame: read
    assert whole.consumed == len(batch)
    assert decode_kept(whole.kept, whole.consumed) == [
        i for i, record in enumerate(batch) if b"error" in record.value
    ]
    truncated = bytes(frame[: cut % len(frame)])
    assert _error(guest.call("filter", truncated.decode("latin-1")))[0] == "serialization"
    for position, xor in flips:
        frame[position % len(frame)] ^= xor
    outcome = guest.call("filter", frame.decode("latin-1"))
    if isinstance(outcome, wc.Variant):
        assert outcome.tag == "serialization", outcome
    # Text that is not Latin-1 (a code point above U+00FF) is refused too.
    assert _error(guest.call("filter", "DFR1\u0100"))[0] == "serialization"


def _error(outcome: Any) -> tuple[str, str]:
    assert isinstance(outcome, wc.Variant), f"expected a call-error, got {outcome!r}"
    return outcome.tag, str(outcome.payload)
