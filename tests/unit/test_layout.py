"""The architecture holds: one product name, an SDK that never reaches up, one loader.

These read the code and the built distribution, so they fail the moment a change
breaks the layout: a module of the SDK importing the host or a third-party
package, a host module constructing a backend outside the loader, a stray
top-level package, a heavy import where a lazy one was promised.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import EXAMPLES, REPO

SDK = REPO / "sdk" / "dataflare"
HOST = REPO / "host" / "dataflare_host"
LOADER = HOST / "plugins" / "_loader.py"
BACKENDS = {"NativePlugin", "WasmPlugin"}
# The bindings componentize-py generates inside the component, imported only
# by the guest shim at call time: they are the WIT contract, not a dependency.
GUEST_BINDINGS = {"componentize_py_types", "wit_world"}


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports statically; a relative import counts as the SDK itself."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("dataflare" if node.level else node.module or "")
    return names


def sdk_files() -> list[Path]:
    return sorted(SDK.rglob("*.py"))


@pytest.mark.parametrize("path", sdk_files(), ids=lambda p: str(p.relative_to(SDK)))
def test_the_sdk_imports_only_the_stdlib_attrs_and_itself(path: Path) -> None:
    """The SDK runs inside the component: no host, no third-party package but attrs."""
    for module in imported_modules(path):
        top = module.split(".")[0]
        if top in sys.stdlib_module_names or top in {"dataflare", "attrs", "attr"}:
            continue
        if top in GUEST_BINDINGS and path.name == "_guest.py":
            continue
        pytest.fail(
            f"{path.relative_to(REPO)} imports {module}: the SDK may import only "
            "the standard library, attrs and itself"
        )


def test_the_import_walk_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The walker above would catch a host or third-party import (it is not vacuous)."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import msgpack\nfrom dataflare_host import Pipeline\nfrom . import _record\n",
        encoding="utf-8",
    )
    assert imported_modules(probe) == {"msgpack", "dataflare_host", "dataflare"}


def backend_constructions(path: Path) -> list[int]:
    """Lines of ``path`` that call NativePlugin(...) or WasmPlugin(...)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name in BACKENDS:
                lines.append(node.lineno)
    return lines


def test_only_the_loader_constructs_a_backend() -> None:
    """Pipelines, the CLI and the test kit get plugins from load_plugin, never a backend."""
    offenders = {
        f"{path.relative_to(REPO)}:{line}"
        for path in sorted(HOST.rglob("*.py"))
        if path != LOADER
        for line in backend_constructions(path)
    }
    assert not offenders, f"backends constructed outside {LOADER.relative_to(REPO)}: {offenders}"
    assert backend_constructions(LOADER), "the loader itself constructs the backends"


def test_every_guest_example_imports_dataflare() -> None:
    """Examples are written against the product's name."""
    for example in sorted(EXAMPLES.glob("*.py")):
        imports = imported_modules(example)
        assert "dataflare" in imports, example
        assert not {"sdk", "host"} & {m.split(".")[0] for m in imports}, example


def test_the_authors_face_reads_in_one_sitting() -> None:
    """``import dataflare`` (without the runtime and the launcher) stays under 900 lines."""
    face = [p for p in SDK.glob("*.py") if p.name != "__main__.py"]
    lines = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in face)
    assert lines < 900, f"the author's face is {lines} lines"


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=False
    )


def test_import_dataflare_works_and_the_old_names_are_gone(tmp_path: Path) -> None:
    """In the installed environment, away from the checkout: new names in, sdk/host out."""
    assert run_python("import dataflare, dataflare_host", tmp_path).returncode == 0
    for old in ("sdk", "host"):
        done = run_python(f"import {old}", tmp_path)
        assert done.returncode != 0, f"import {old} still works"
        assert "ModuleNotFoundError" in done.stderr


def test_python_dash_m_dataflare_runs_the_cli(tmp_path: Path) -> None:
    """``python -m dataflare`` is the CLI."""
    done = subprocess.run(
        [sys.executable, "-m", "dataflare", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "validate" in done.stdout
    assert "build" in done.stdout


@pytest.mark.parametrize(
    ("module", "heavy"),
    [
        (
            "dataflare_host.testing._pytest_plugin",
            ["hypothesis", "wasmtime", "dataflare_host.testing._running"],
        ),
        ("dataflare_host.connectors", ["psycopg", "redis"]),
        ("dataflare_host", ["wasmtime", "psycopg", "redis", "hypothesis"]),
        ("dataflare", ["dataflare_host", "msgpack", "wasmtime"]),
    ],
)
def test_imports_stay_lazy(module: str, heavy: list[str], tmp_path: Path) -> None:
    """The pytest plugin, the connectors and the host root load nothing heavy on import."""
    code = (
        f"import sys, {module}\n"
        f"loaded = [m for m in {heavy!r} if m in sys.modules]\n"
        "print(','.join(loaded))\n"
    )
    done = run_python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"importing {module} loaded {done.stdout.strip()}"


@pytest.mark.slow
def test_the_wheel_installs_exactly_the_two_product_packages(tmp_path: Path) -> None:
    """The distribution's top-level names are dataflare and dataflare_host, nothing else."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("dataflare_plugins-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"dataflare", "dataflare_host"}
    assert "dataflare_host/wasm/build/_wit/plugin.wit" in names  # build works from a wheel
    # A folder named build/ is code here: an ignore rule for build output must not drop it.
    assert "dataflare_host/wasm/build/_cache.py" in names
    assert "dataflare/py.typed" in names
    assert "dataflare_host/py.typed" in names
