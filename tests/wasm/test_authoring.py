"""The authoring kit: dataflare new -> build -> pytest for every kind; the parity helper.

Builds components: marked wasm and slow; each is built once (in parallel, two at a time).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from xml.etree import ElementTree

import pytest
from click.testing import CliRunner
from filelock import FileLock
from support.paths import TEST_CACHE
from support.pytest_runs import run_pytest

from dataflare import PluginKind, Record
from dataflare_host.cli._main import main
from dataflare_host.testing import ParityError, assert_parity

pytestmark = [pytest.mark.wasm, pytest.mark.slow]

BIN = Path(sys.executable).parent
KINDS = [kind.value for kind in PluginKind]
# Every kind once, the two template shapes taking turns: JSON (the default, so no
# --shape) and bytes. A component costs about half a minute of CPU to build and
# compile, so the suite builds five here, not all ten: every template's own tests
# run natively in the fast loop (tests/unit/test_new_templates.py), each kind and
# each shape gets its native == WASM test here, and the fresh-install test builds
# the default map project (JSON) from a clean venv.
PROJECTS = {
    (f"my_{kind}" if index % 2 == 0 else f"my_{kind}_bytes"): (
        kind,
        [] if index % 2 == 0 else ["--shape", "bytes"],
    )
    for index, kind in enumerate(KINDS)
}

PLANTED = '''"""A filter that differs when built: in the guest it drops values holding x."""

import sys

import dataflare


@dataflare.filter
def planted(record: dataflare.Record) -> bool:
    return not (sys.platform == "wasi" and b"x" in record.value)
'''


@pytest.fixture(scope="module")
def scaffolded() -> Iterator[Path]:
    """One folder per project of PROJECTS from `dataflare new`, each built with `dataflare build`.

    The folder is the same in every run (under the test cache, emptied first): a
    component says which file it was built from, so its build is keyed by that path,
    and a fresh temporary folder would rebuild every component every run. Two
    test sessions of one checkout running at once take turns with it.
    """
    root = TEST_CACHE / "authoring-projects"
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(root.parent / "authoring-projects.lock"):
        yield _scaffold(root)


def _scaffold(root: Path) -> Path:
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    for name, (kind, shape) in PROJECTS.items():
        done = subprocess.run(
            [str(BIN / "dataflare"), "new", name, "--kind", kind, *shape],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr

    def build(name: str) -> subprocess.CompletedProcess[str]:
        plugin = root / name / f"{name}.py"
        return subprocess.run(
            [str(BIN / "dataflare"), "build", str(plugin)],
            capture_output=True,
            text=True,
            check=False,
        )

    with ThreadPoolExecutor(max_workers=2) as pool:
        for name, done in zip(PROJECTS, pool.map(build, PROJECTS), strict=True):
            assert done.returncode == 0, (name, done.stderr)
            assert done.stdout.startswith(f"built {root / name / f'{name}.wasm'}")
    return root


def test_new_writes_a_plugin_its_tests_and_a_readme(tmp_path: Path) -> None:
    """`dataflare new` creates NAME/NAME.py, NAME/test_NAME.py and NAME/README.md."""
    result = CliRunner().invoke(
        main, ["new", "shout", "--kind", "map", "--directory", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    folder = tmp_path / "shout"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "shout.py", "test_shout.py"]
    assert "def shout(record" in (folder / "shout.py").read_text()
    assert "dataflare build shout.py" in (folder / "README.md").read_text()


def test_new_refuses_bad_names_and_existing_files(tmp_path: Path) -> None:
    """A name that is not an identifier, or a folder already there, exits 2 with one line."""
    runner = CliRunner()
    bad = runner.invoke(main, ["new", "my-plugin", "--kind", "map", "--directory", str(tmp_path)])
    assert bad.exit_code == 2
    assert bad.stderr.count("\n") == 1
    assert "must be a Python identifier" in bad.stderr
    assert (
        runner.invoke(main, ["new", "p", "--kind", "map", "--directory", str(tmp_path)]).exit_code
        == 0
    )
    again = runner.invoke(main, ["new", "p", "--kind", "filter", "--directory", str(tmp_path)])
    assert again.exit_code == 2
    assert "not overwriting" in again.stderr


@pytest.fixture(scope="module")
def generated_tests(scaffolded: Path) -> dict[str, dict[str, str]]:
    """Every project's generated tests, run by one pytest: outcome by test name, by project.

    One pytest process for every project, as a user would run a folder of plugins;
    a process per project paid its start-up (pytest, the kit, a sandbox process) each time.
    """
    report = str(scaffolded / "generated-tests.xml")
    projects = [str(scaffolded / name) for name in PROJECTS]
    done = run_pytest("--junitxml", report, *projects, cwd=scaffolded, timeout_s=1200)
    assert Path(report).is_file(), done.stdout[-3000:] + done.stderr[-2000:]
    outcomes: dict[str, dict[str, str]] = {name: {} for name in PROJECTS}
    for case in ElementTree.parse(report).iter("testcase"):
        module = case.get("classname", "").rsplit(".", 1)[-1]
        project = module.removeprefix("test_")
        assert project in outcomes, f"a test outside the projects ran: {module}"
        problems = [child for child in case if child.tag in {"failure", "error", "skipped"}]
        outcomes[project][case.get("name", "")] = (
            "passed"
            if not problems
            else f"{problems[0].tag}: {problems[0].get('message', '')}\n{problems[0].text or ''}"
        )
    return outcomes


@pytest.mark.parametrize("name", PROJECTS)
def test_new_then_build_then_pytest_passes(
    generated_tests: dict[str, dict[str, str]], name: str
) -> None:
    """The generated property tests (the kind's law and native == WASM) pass as generated."""
    outcomes = generated_tests[name]
    assert len(outcomes) == 2, outcomes  # the law and native == WASM
    assert set(outcomes.values()) == {"passed"}, outcomes


def test_parity_helper_finds_and_shrinks_a_planted_difference(tmp_path: Path) -> None:
    """assert_parity reports the minimal batch on which the built plugin differs: one b"x"."""
    plugin = tmp_path / "planted.py"
    plugin.write_text(PLANTED)
    with pytest.raises(ParityError) as caught:
        assert_parity(plugin, max_examples=200)
    assert caught.value.batch == [Record(b"x")]
    assert "outputs: native [(b'x', None, None, {}, 0)]" in str(caught.value)


def test_dataflare_test_wasm_shows_the_difference(tmp_path: Path) -> None:
    """`dataflare test --wasm` exits 1 and names what differs; an honest plugin agrees."""
    plugin = tmp_path / "planted.py"
    plugin.write_text(PLANTED)
    runner = CliRunner()
    differs = runner.invoke(main, ["test", str(plugin), "--wasm", "--text", "abc", "--text", "x"])
    assert differs.exit_code == 1
    assert differs.stdout.splitlines() == ["abc", "x"]  # the native outputs
    assert "native and WASM results differ" in differs.stderr
    assert "wasm   [(b'abc', None, None, {}, 0)]" in differs.stderr
    same = runner.invoke(main, ["test", str(plugin), "--wasm", "--text", "abc"])
    assert same.exit_code == 0, same.stderr
    assert same.stderr.strip() == "native and WASM agree on 1 record(s)"


def test_dataflare_test_wasm_needs_a_py_file(tmp_path: Path) -> None:
    """--wasm compares a .py with its component: a .wasm argument is a usage error."""
    done = CliRunner().invoke(main, ["test", str(tmp_path / "x.wasm"), "--wasm", "--text", "a"])
    assert done.exit_code == 2
    assert "--wasm compares a .py plugin" in done.stderr
