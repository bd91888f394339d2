"""``dataflare test``: outputs on stdout, one error line on stderr, exit codes 0/1/2.

Each behaviour runs through click's CliRunner on ``host._cli.main`` and through the
installed ``dataflare`` console script in a subprocess.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import pytest
from support.cli import invoke_main
from support.paths import EXAMPLES


class Run(NamedTuple):
    exit_code: int
    stdout: str
    stderr: str


Runner = Callable[..., Run]


def run_with_clirunner(args: Sequence[str], stdin: str | None = None) -> Run:
    result = invoke_main(args, stdin)
    return Run(result.exit_code, result.stdout, result.stderr)


def run_with_subprocess(args: Sequence[str], stdin: str | None = None) -> Run:
    exe = Path(sys.executable).parent / "dataflare"
    done = subprocess.run(
        [str(exe), *args], input=stdin, capture_output=True, text=True, timeout=30, check=False
    )
    return Run(done.returncode, done.stdout, done.stderr)


@pytest.fixture(params=["clirunner", "subprocess"])
def run(request: pytest.FixtureRequest) -> Runner:
    """Runs the CLI in-process with CliRunner, then as the installed console script."""
    return run_with_clirunner if request.param == "clirunner" else run_with_subprocess


def example(name: str) -> str:
    return str(EXAMPLES / name)


def assert_one_error_line(run: Run, exit_code: int, *fragments: str) -> str:
    """stderr is exactly one ``error: ...`` line holding ``fragments``; no traceback."""
    assert run.exit_code == exit_code, run
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    (line,) = lines
    assert line.startswith("error: "), line
    for fragment in fragments:
        assert fragment in line, line
    assert "Traceback" not in run.stdout + run.stderr
    return line


# --- every example, with params --------------------------------------------------------

EXAMPLE_RUNS = [
    (
        "contains_filter.py",
        ["an error", "fine", "errors everywhere"],
        [],
        ["an error", "errors everywhere"],
    ),
    ("contains_filter.py", ["an error", "a warning"], ["-e", "needle=warn"], ["a warning"]),
    (
        "json_field_filter.py",
        ['{"status":"active","id":1}', '{"status":"off","id":2}', "[1]"],
        [],
        ['{"status":"active","id":1}'],
    ),
    (
        "json_field_filter.py",
        ['{"kind":"on"}', '{"kind":"off"}', '{"status":"active"}'],
        ["-e", "field=kind", "-e", "value=on"],
        ['{"kind":"on"}'],
    ),
    ("regex_filter.py", ["abc123", "no digits", "x9"], ["-e", r"pattern=\d+"], ["abc123", "x9"]),
    ("dedupe_filter.py", ["a", "b", "a", "c", "b"], [], ["a", "b", "c"]),
    ("uppercase_map.py", ["hello", "Mixed Case é"], [], ["HELLO", "MIXED CASE é"]),
    ("even_double_filter_map.py", ["1", "2", "-4", "7"], [], ["4", "-8"]),
    (
        "explode_array_map.py",
        ['[1, "a", {"b": null}]', "[]", "[true]"],
        [],
        ["1", '"a"', '{"b":null}', "true"],
    ),
    (
        "sum_aggregate.py",
        ['{"amount": 2}', '{"amount": 3.5}', '{"other": 1}'],
        [],
        ["2", "5.5", "5.5"],
    ),
    ("sum_aggregate.py", ['{"qty": 1}', '{"qty": 10}'], ["-e", "field=qty"], ["1", "11"]),
    (
        "windowed_count_aggregate.py",
        ['{"t": 1000}', '{"t": 59999}', '{"t": 70000}', '{"t": 200000}'],
        ["--timestamp-field", "t"],
        ["2", "1"],  # [0, 60 s) holds two, [60 s, 120 s) one; [180 s, 240 s) is still open
    ),
]


def test_every_example_has_a_cli_run() -> None:
    """EXAMPLE_RUNS covers every file in guest_examples/."""
    assert {name for name, *_ in EXAMPLE_RUNS} == {p.name for p in EXAMPLES.glob("*.py")}


@pytest.mark.parametrize(
    ("name", "lines", "params", "expected"),
    EXAMPLE_RUNS,
    ids=[f"{name}-{i}" for i, (name, *_) in enumerate(EXAMPLE_RUNS)],
)
def test_example_with_text(
    run: Runner, name: str, lines: list[str], params: list[str], expected: list[str]
) -> None:
    """--text for every example, with params, prints one output per line and exits 0."""
    texts = [arg for line in lines for arg in ("--text", line)]
    done = run(["test", example(name), *texts, *params])
    assert (done.exit_code, done.stdout.splitlines(), done.stderr) == (0, expected, "")


def test_text_with_newlines_is_one_record_per_line(run: Runner) -> None:
    """A --text value holding several lines gives one record per line."""
    done = run(["test", example("uppercase_map.py"), "--text", "a\nb", "--text", "c"])
    assert done.stdout.splitlines() == ["A", "B", "C"]


def test_file_input(run: Runner, tmp_path: Path) -> None:
    """--file reads one record per line, CRLF or LF."""
    source = tmp_path / "input.txt"
    source.write_bytes(b"one error\r\nno\nerror two\n")
    done = run(["test", example("contains_filter.py"), "--file", str(source)])
    assert (done.exit_code, done.stdout.splitlines()) == (0, ["one error", "error two"])


def test_stdin_input(run: Runner) -> None:
    """--stdin reads one record per line."""
    done = run(["test", example("even_double_filter_map.py"), "--stdin"], stdin="2\n3\n10\n")
    assert (done.exit_code, done.stdout.splitlines()) == (0, ["4", "20"])


def test_no_input_is_a_usage_error(run: Runner) -> None:
    """Without --text, --file or --stdin the command refuses to run."""
    done = run(["test", example("uppercase_map.py")])
    assert done.exit_code == 2
    assert "--text" in done.stderr


def test_missing_input_file_is_a_usage_error(run: Runner, tmp_path: Path) -> None:
    """--file naming a missing file is a usage error."""
    done = run(["test", example("uppercase_map.py"), "--file", str(tmp_path / "nope.txt")])
    assert done.exit_code == 2
    assert "nope.txt" in done.stderr


# --- a raising plugin ------------------------------------------------------------------


def test_raising_plugin_prints_earlier_outputs_and_one_error_line(run: Runner) -> None:
    """A plugin raising at record 2: outputs 0-1 printed, one error line, exit 1, no traceback."""
    done = run(["test", example("even_double_filter_map.py"), "--text", "2\n4\nseven\n8"])
    assert done.stdout.splitlines() == ["4", "8"]
    line = assert_one_error_line(done, 1)
    assert line == (
        "error: plugin 'even_doubled' (filter_map) failed at record offset 2 "
        "(even_double_filter_map.py:8): "
        "ValueError: invalid literal for int() with base 10: b'seven'"
    )


def test_raising_plugin_with_a_multiline_message_prints_one_line(
    run: Runner, tmp_path: Path
) -> None:
    """An exception message spanning lines is still reported on one line."""
    plugin = tmp_path / "multiline.py"
    plugin.write_text(
        "import dataflare\n\n\n@dataflare.map\ndef shout(record):\n"
        "    raise ValueError('first line\\nsecond line')\n"
    )
    done = run(["test", str(plugin), "--text", "x"])
    assert_one_error_line(done, 1, "plugin 'shout' (map) failed at record offset 0", "first line")


# --- configuration errors --------------------------------------------------------------


def test_missing_required_param(run: Runner) -> None:
    """regex_filter without its required pattern exits 2 naming the parameter."""
    done = run(["test", example("regex_filter.py"), "--text", "x"])
    assert done.stdout == ""
    assert_one_error_line(done, 2, "'pattern'", "regex_filter.py")


def test_unknown_param(run: Runner) -> None:
    """A misspelt parameter exits 2 with a did-you-mean."""
    done = run(["test", example("contains_filter.py"), "--text", "x", "-e", "neddle=x"])
    assert_one_error_line(done, 2, "'neddle'", "did you mean 'needle'?")


def test_init_hook_failure(run: Runner) -> None:
    """A pattern that does not compile fails in @init: exit 2, one line."""
    done = run(["test", example("regex_filter.py"), "--text", "x", "-e", "pattern=("])
    assert_one_error_line(done, 2, "'matches'", "'compile_pattern'", "position 0")


@pytest.mark.parametrize("bad", ["needle", "=x"])
def test_param_without_equals_is_a_usage_error(run: Runner, bad: str) -> None:
    """-e needs KEY=VALUE; anything else is a click usage error (exit 2)."""
    done = run(["test", example("contains_filter.py"), "--text", "x", "-e", bad])
    assert done.exit_code == 2
    assert "Usage:" in done.stderr
    assert "KEY=VALUE" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


PLUGIN_FILES = {
    "no_plugin": (
        "import dataflare\n\n\ndef helper(record):\n    return record\n",
        "defines no plugin",
    ),
    "two_plugins": (
        "import dataflare\n\n\n@dataflare.filter\ndef first(record):\n    return True\n\n\n"
        "@dataflare.map\ndef second(record):\n    return record\n",
        "first, second",
    ),
    "syntax_error": (
        "import dataflare\n\n@dataflare.map\ndef broken(record:\n    return record\n",
        "syntax error",
    ),
    "import_error": ("import no_such_module_dataflare\n", "ModuleNotFoundError"),
    "bad_decoration": (
        "import dataflare\n\n\n@dataflare.map\ndef wrong(a, b, c):\n    pass\n",
        "wrong",
    ),
}


@pytest.mark.parametrize("case", sorted(PLUGIN_FILES))
def test_bad_plugin_file(run: Runner, tmp_path: Path, case: str) -> None:
    """A file with no plugin, two plugins, a syntax error or a failing import exits 2 naming it."""
    source, fragment = PLUGIN_FILES[case]
    plugin = tmp_path / f"{case}.py"
    plugin.write_text(source)
    done = run(["test", str(plugin), "--text", "x"])
    assert done.stdout == ""
    assert_one_error_line(done, 2, str(plugin), fragment)


def test_missing_plugin_file(run: Runner, tmp_path: Path) -> None:
    """A plugin path that does not exist exits 2 naming it."""
    missing = tmp_path / "absent.py"
    done = run(["test", str(missing), "--text", "x"])
    assert_one_error_line(done, 2, str(missing))


def test_version(run: Runner) -> None:
    """--version prints the distribution version, which is the SDK's too."""
    import dataflare

    done = run(["--version"])
    assert done.exit_code == 0
    assert importlib.metadata.version("dataflare-plugins") in done.stdout.split()
    assert dataflare.__version__ == importlib.metadata.version("dataflare-plugins")
