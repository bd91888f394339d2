"""``dataflare build`` and ``dataflare test x.wasm``: the .py's output, clear failures, a cache.

Each example's component (built once per session by ``example_components``)
must print byte-identical stdout, the same stderr line (modulo file names) and
exit with the same code as its source file run natively, on the same input and
params, including inputs that make the plugin fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import pytest
from click.testing import CliRunner
from support.output import without_progress
from support.paths import EXAMPLES

import dataflare_host.cli._main as cli_main
import dataflare_host.wasm.sandbox.child._wasmtime_engine as engine_module
from dataflare import Record
from dataflare_host import load_plugin
from dataflare_host._cache import cache_root

pytestmark = pytest.mark.wasm

DATAFLARE = Path(sys.executable).parent / "dataflare"


class Run(NamedTuple):
    exit_code: int
    stdout: bytes
    stderr: str


def dataflare(*args: str | bytes | Path) -> Run:
    """The installed console script in a subprocess (DATAFLARE_CACHE_DIR inherited)."""
    done = subprocess.run(
        [str(DATAFLARE), *args], capture_output=True, timeout=120, check=False, env=os.environ
    )
    stderr = without_progress(done.stderr.decode("utf-8", "replace"))
    return Run(done.returncode, done.stdout, stderr)


def one_line(run: Run) -> str:
    """The single stderr line of a failed run (never a traceback or a Rust backtrace)."""
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    for marker in ("Traceback", "panicked", "stack backtrace", "RUST_BACKTRACE"):
        assert marker not in run.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def without_names(stderr: str, *paths: Path) -> str:
    """stderr with the plugin's file names (full path first, then base name) blanked."""
    for path in paths:
        stderr = stderr.replace(str(path), "<plugin>")
    for path in paths:
        stderr = stderr.replace(path.name, "<plugin>")
    # The WASM backend prefixes configuration errors with the component's path.
    return stderr.replace("error: <plugin>: ", "error: ")


# --- build -------------------------------------------------------------------------------


def test_every_example_builds(example_components: dict[str, Path]) -> None:
    """Every guest example has a component: a non-trivial WebAssembly component file."""
    assert set(example_components) == {path.stem for path in EXAMPLES.glob("*.py")}
    for wasm in example_components.values():
        head = wasm.read_bytes()[:8]
        assert head[:4] == b"\x00asm"
        assert head[4:] != b"\x01\x00\x00\x00", f"{wasm} is a core module, not a component"
        assert wasm.stat().st_size > 1_000_000


def test_build_command_reports_the_component(
    example_components: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dataflare build X -o Y` reuses the shared build cache, says where and how big, exit 0.

    The session already built every example through that cache: building one
    again would fail the test.
    """

    def no_rebuild(source: Path, output: Path | None = None, **_: object) -> Path:
        raise AssertionError(f"{source} was built again: the build cache should have it")

    monkeypatch.setattr("dataflare_host.wasm.build._cache.build_component", no_rebuild)
    out = tmp_path / "upper.wasm"
    result = CliRunner().invoke(
        cli_main.main, ["build", str(EXAMPLES / "uppercase_map.py"), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert re.fullmatch(
        rf"built {re.escape(str(out))} \(\d+\.\d MB\), compiled for this host\n", result.stdout
    )
    assert out.read_bytes() == example_components["uppercase_map"].read_bytes()


def write_plugin(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / name
    path.write_text(source, encoding="utf-8")
    return path


def test_build_syntax_error_is_one_line_naming_the_line(tmp_path: Path) -> None:
    """A syntax error fails the build at once with one line naming the file and line."""
    plugin = write_plugin(
        tmp_path,
        "broken.py",
        '"""Broken."""\nimport dataflare\n\n\n@dataflare.filter\ndef f(record)\n    return 1\n',
    )
    run = dataflare("build", plugin, "-o", tmp_path / "broken.wasm")
    assert run.exit_code == 2
    line = one_line(run)
    assert str(plugin) in line
    assert "line 6" in line
    assert not (tmp_path / "broken.wasm").exists()


def test_build_without_a_plugin_is_one_line(tmp_path: Path) -> None:
    """A file with no decorated function fails the build with one line saying so."""
    plugin = write_plugin(
        tmp_path,
        "empty.py",
        '"""Nothing."""\nimport dataflare\n\n\ndef helper(record):\n    return 1\n',
    )
    run = dataflare("build", plugin)
    assert run.exit_code == 2
    line = one_line(run)
    assert "no plugin" in line
    assert str(plugin) in line


def test_build_with_a_module_the_guest_lacks_names_it(tmp_path: Path) -> None:
    """An import that works on the host but not in the guest (yaml) fails the build, named."""
    import yaml  # noqa: F401 - the host has it: the native pre-check passes

    plugin = write_plugin(
        tmp_path,
        "needs_yaml.py",
        '"""Parses YAML."""\nimport yaml\n\nimport dataflare\n\n\n'
        "@dataflare.filter\ndef is_mapping(record: dataflare.Record) -> bool:\n"
        "    return isinstance(yaml.safe_load(record.value), dict)\n",
    )
    run = dataflare("build", plugin, "-o", tmp_path / "needs_yaml.wasm")
    assert run.exit_code == 2
    line = one_line(run)
    assert "No module named 'yaml', imported at needs_yaml.py:2" in line
    assert str(plugin) in line
    assert not (tmp_path / "needs_yaml.wasm").exists()


# --- dataflare test x.wasm == dataflare test x.py ----------------------------------------

CLI_CASES = [
    pytest.param("contains_filter", ["an error", "fine", "errors \u00e9\u00fc"], [], id="contains"),
    pytest.param(
        "contains_filter",
        ["an error", "a warning", "\u00e9t\u00e9"],
        ["-e", "needle=\u00e9"],
        id="contains-needle",
    ),
    pytest.param("contains_filter", ["x"], ["-e", "bogus=1"], id="contains-unknown-param"),
    pytest.param(
        "json_field_filter",
        ['{"status":"active"}', '{"status":"off"}', '{"status":"active","n":"\u00e9"}', "nope"],
        [],
        id="json-fails",
    ),
    pytest.param(
        "json_field_filter",
        ['{"kind":"on"}', '{"kind":"off"}'],
        ["-e", "field=kind", "-e", "value=on"],
        id="json-params",
    ),
    pytest.param("regex_filter", ["abc", "xyz", "ab\tb"], ["-e", r"pattern=^ab+"], id="regex"),
    pytest.param("regex_filter", ["abc"], [], id="regex-missing-param"),
    pytest.param("dedupe_filter", ["a", "\u00e9", "a", "b", "\u00e9", ""], [], id="dedupe"),
    pytest.param("uppercase_map", ["h\u00e9llo", "a\nb", ""], [], id="upper"),
    pytest.param("even_double_filter_map", ["2", "3", "4", "x", "6"], [], id="even-fails"),
    pytest.param("even_double_filter_map", ["10", "-4", "7"], [], id="even"),
    pytest.param(
        "explode_array_map", ['[1,"\u00e9",{"a":null}]', "[]", "{}"], [], id="explode-fails"
    ),
    pytest.param("sum_aggregate", ['{"amount":1}', '{"amount":2.5}', "{}"], [], id="sum"),
    pytest.param(
        "sum_aggregate", ['{"qty":1}', '{"qty":"x"}'], ["-e", "field=qty"], id="sum-fails"
    ),
    # Lines from the CLI carry no timestamp: a windowed aggregate refuses them.
    pytest.param("windowed_count_aggregate", ["a", "b"], [], id="windowed-fails"),
]


def run_both(
    components: dict[str, Path], example: str, lines: list[str], params: list[str]
) -> tuple[Path, Path, Run, Run]:
    """`dataflare test` on the example's .py and on its .wasm, with the same input."""
    source = EXAMPLES / f"{example}.py"
    wasm = components[example]
    texts = [arg for line in lines for arg in ("--text", line)]
    return (
        source,
        wasm,
        dataflare("test", source, *texts, *params),
        dataflare("test", wasm, *texts, *params),
    )


@pytest.mark.parametrize(("example", "lines", "params"), CLI_CASES)
def test_wasm_prints_what_the_source_prints(
    example_components: dict[str, Path], example: str, lines: list[str], params: list[str]
) -> None:
    """Same stdout bytes, same stderr line (file names aside), same exit code."""
    source, wasm, native, component = run_both(example_components, example, lines, params)
    assert component.stdout == native.stdout
    assert component.exit_code == native.exit_code
    assert without_names(component.stderr, wasm, source) == without_names(
        native.stderr, wasm, source
    )
    if native.exit_code:
        one_line(component)


def test_cli_cases_cover_every_example() -> None:
    """Every example is run through the CLI comparison at least once."""
    covered = {case.values[0] for case in CLI_CASES}
    assert covered == {path.stem for path in EXAMPLES.glob("*.py")}


# Error *type names* and messages come from the interpreter: the host runs
# CPython 3.11, the guest 3.14, and these changed in between (re.error became
# re.PatternError in 3.13; 3.13 reworded the trailing-comma JSON error).
@pytest.mark.xfail(strict=True, reason="CPython 3.11 host vs 3.14 guest: messages differ")
@pytest.mark.parametrize(
    ("example", "lines", "params"),
    [
        pytest.param("regex_filter", ["abc"], ["-e", "pattern=("], id="re-error-name"),
        pytest.param("json_field_filter", ['{"a":1,}'], [], id="json-trailing-comma"),
    ],
)
def test_interpreter_version_divergence(
    example_components: dict[str, Path], example: str, lines: list[str], params: list[str]
) -> None:
    """Known: errors whose wording depends on the CPython version differ between backends."""
    source, wasm, native, component = run_both(example_components, example, lines, params)
    assert without_names(component.stderr, wasm, source) == without_names(
        native.stderr, wasm, source
    )


@pytest.mark.parametrize("backend", ["py", "wasm"])
def test_non_utf8_input_is_not_a_traceback(
    example_components: dict[str, Path], backend: str
) -> None:
    """--text with bytes that are not UTF-8 is processed (or refused in one line), never a crash.

    BUG (host/_cli.py, ``test``): ``Record(line.encode(), ...)`` raises
    UnicodeEncodeError on the surrogate escapes Python uses for such argv bytes.
    """
    plugin = (
        EXAMPLES / "uppercase_map.py" if backend == "py" else example_components["uppercase_map"]
    )
    run = dataflare("test", plugin, "--text", b"ab\xff\xfe")
    assert "Traceback" not in run.stderr
    assert run.exit_code == 0, run.stderr
    assert run.stdout == b"AB\\xff\\xfe\n"


# --- broken components -------------------------------------------------------------------


@pytest.fixture(scope="module")
def broken_wasm(
    example_components: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """.wasm files that are not components: random bytes, a truncated component, a core module."""
    folder = tmp_path_factory.mktemp("broken")
    contents = {
        "random": os.urandom(4096),
        "truncated": example_components["uppercase_map"].read_bytes()[:100_000],
        "core-module": b"\x00asm\x01\x00\x00\x00",
        "empty": b"",
    }
    files = {}
    for name, data in contents.items():
        files[name] = folder / f"{name}.wasm"
        files[name].write_bytes(data)
    return files


@pytest.mark.parametrize("kind", ["random", "truncated", "core-module", "empty", "missing"])
def test_broken_component_is_one_line_naming_the_file(
    broken_wasm: dict[str, Path], tmp_path: Path, kind: str
) -> None:
    """`dataflare test` on a .wasm that is not a plugin component: one line, exit 2."""
    path = broken_wasm.get(kind, tmp_path / "missing.wasm")
    run = dataflare("test", path, "--text", "x")
    assert run.exit_code == 2, run
    assert str(path) in one_line(run)
    assert run.stdout == b""


# --- compile cache -----------------------------------------------------------------------


@pytest.fixture
def fresh_engines(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Call the returned function to start a new process-wide engine (as a new process would)."""

    def fresh() -> None:
        monkeypatch.setattr(engine_module, "_shared", None)
        engine_module.wasmtime_engine()

    return fresh


def artifacts(folder: Path) -> set[str]:
    return {path.name for path in folder.glob("*.cwasm")}


def first_record(
    path: Path, records: Sequence[Record], new_engine: Callable[[], None]
) -> tuple[float, list[bytes]]:
    """Seconds from a new engine to the first batch's outputs, and those outputs."""
    started = time.perf_counter()
    new_engine()
    with load_plugin(path) as plugin:
        values = [r.value for r in plugin.process(records).outputs]
        elapsed = time.perf_counter() - started
    return elapsed, values


def test_compiled_components_are_cached_on_disk_per_component(
    example_components: dict[str, Path],
    tmp_path: Path,
    fresh_engines: Callable[[], None],
) -> None:
    """One artifact per distinct component, found by content: a new engine skips the compile.

    Uses the session's cache directory, so no component is compiled twice in a session.
    """
    cache = cache_root() / "compiled"
    for wasm in example_components.values():
        fresh_engines()
        engine_module.wasmtime_engine().load(wasm, cache_root())  # compiles, or reads the artifact
    assert len(artifacts(cache)) >= len(example_components)  # one each, not one shared
    before = artifacts(cache)

    # Same bytes under another name, in a new engine: found by content, not compiled.
    upper = tmp_path / "renamed-upper.wasm"
    shutil.copyfile(example_components["uppercase_map"], upper)
    warm, values = first_record(upper, [Record(b"hi")], fresh_engines)
    assert values == [b"HI"]
    assert artifacts(cache) == before
    assert warm < 1.0, f"a cached component took {warm:.2f} s to its first record"


def test_cached_cold_start_reaches_the_first_record_quickly(
    example_components: dict[str, Path],
    fresh_engines: Callable[[], None],
) -> None:
    """Loose guard: new engine + cached artifact -> first record in < 200 ms (target 50 ms)."""
    upper = example_components["uppercase_map"]
    first_record(upper, [Record(b"warm")], fresh_engines)  # the session's disk cache has it now
    timings = []
    for _ in range(3):
        elapsed, values = first_record(upper, [Record(b"hi")], fresh_engines)
        assert values == [b"HI"]
        timings.append(elapsed)
    assert min(timings) < 0.2, timings
