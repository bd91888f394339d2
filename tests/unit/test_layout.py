"""The architecture holds: one product name, an SDK that never reaches up, one loader.

These read the code and the built distribution, so they fail the moment a change
breaks the layout: a module of the SDK importing the host or a third-party
package, a host module constructing a backend outside the loader, a stray
top-level package, a heavy import where a lazy one was promised, an import
circle, an import that goes up between concept folders, a sandbox process's
module importing more than the standard library, wasmtime and the protocol, a
module over 600 lines. Each check has a probe showing it catches what it names.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import attrs
import pytest
from support.paths import EXAMPLES, REPO

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
        (
            # What `dataflare run` loads before the command runs: no build, no scan.
            "dataflare_host.cli",
            [
                "importlib.metadata",
                "filelock",
                "platformdirs",
                "dataflare_host.wasm.build._componentize",
                "httpx",
                "psycopg",
                "confluent_kafka",
                "prometheus_client",
                "rich",
                "wasmtime",
            ],
        ),
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
        # The layout alone: the shared runtime the wheel carries is tests/install's.
        env={**os.environ, "DATAFLARE_NO_BUNDLED_RUNTIME": "1"},
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


# --- the import graph of host/ and sdk/ --------------------------------------------------
#
# Every import counts: at module level, inside functions (the lazy ones), and under
# ``if TYPE_CHECKING:`` (a package's lazy attributes are written there, and a type
# is a dependency too). ``from package import name`` is an edge to the submodule
# when ``name`` is one, else to the package. Importing a submodule also runs its
# parents' ``__init__``: that is not an edge (every module would then be in a
# circle with its package), but the packages on the sandbox process's path are
# checked to import nothing (see test_the_packages_on_the_sandbox_path_import_nothing).


@attrs.frozen
class Import:
    """One import statement's target, as the graph sees it."""

    target: str  # a module of the graph, or the imported name outside it
    line: int
    typing_only: bool  # under ``if TYPE_CHECKING:``
    internal: bool  # a module of the graph (else the standard library or a third party)


@attrs.frozen
class ImportGraph:
    """The modules of some top-level packages, and what each imports."""

    files: Mapping[str, Path]
    imports: Mapping[str, tuple[Import, ...]]

    @classmethod
    def of(cls, *packages: Path) -> ImportGraph:
        """The graph of the packages (folders) given, module names relative to their parent."""
        files: dict[str, Path] = {}
        for package in packages:
            for path in sorted(package.rglob("*.py")):
                parts = list(path.relative_to(package.parent).with_suffix("").parts)
                if parts[-1] == "__init__":
                    parts.pop()
                files[".".join(parts)] = path
        imports = {
            module: tuple(_resolved(module, path, files)) for module, path in files.items()
        }
        return cls(files, imports)

    def edges(self, module: str) -> set[str]:
        """The graph's modules ``module`` imports."""
        return {i.target for i in self.imports[module] if i.internal and i.target != module}

    def cycles(self) -> list[list[str]]:
        """Every strongly connected component of more than one module (Tarjan's)."""
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        on_stack: set[str] = set()
        found: list[list[str]] = []

        def strong(module: str) -> None:
            index[module] = low[module] = len(index)
            stack.append(module)
            on_stack.add(module)
            for target in sorted(self.edges(module)):
                if target not in index:
                    strong(target)
                    low[module] = min(low[module], low[target])
                elif target in on_stack:
                    low[module] = min(low[module], index[target])
            if low[module] == index[module]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == module:
                        break
                if len(component) > 1:
                    found.append(sorted(component))

        for module in sorted(self.files):
            if module not in index:
                strong(module)
        return found

    def edges_between(self, source: str, target: str) -> list[str]:
        """``a -> b (line)`` for every import from a module under ``source`` into ``target``."""
        return [
            f"{module} -> {i.target} (line {i.line})"
            for module, found in sorted(self.imports.items())
            if _under(module, source)
            for i in found
            if i.internal and _under(i.target, target)
        ]


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(tree: ast.AST, typing_only: bool = False) -> Iterator[tuple[ast.stmt, bool]]:
    """Every import statement anywhere in ``tree``, and whether it is under TYPE_CHECKING."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for statement in node.body:
                yield from _statements(ast.Module([statement], []), True)
            for statement in node.orelse:
                yield from _statements(ast.Module([statement], []), typing_only)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            yield node, typing_only
        else:
            yield from _statements(node, typing_only)


def _resolved(module: str, path: Path, files: Mapping[str, Path]) -> Iterator[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node, typing_only in _statements(tree):
        if isinstance(node, ast.Import):
            names = [(alias.name, None) for alias in node.names]
        else:
            assert isinstance(node, ast.ImportFrom)
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            names = [(base, alias.name) for alias in node.names]
        for base, name in names:
            if name is not None and f"{base}.{name}" in files:
                yield Import(f"{base}.{name}", node.lineno, typing_only, internal=True)
                continue
            parts = base.split(".")
            while parts and ".".join(parts) not in files:
                parts.pop()  # ``import a.b.c`` of a package whose c is no file here
            if parts:
                yield Import(".".join(parts), node.lineno, typing_only, internal=True)
            else:
                yield Import(base, node.lineno, typing_only, internal=False)


GRAPH = ImportGraph.of(SDK, HOST)

# Concept folders, lowest first: a module may import its own concept or a lower one.
# The host's base modules (dataflare_host._cache, _text, _waiting, _lazy, _closing,
# _user_code) sit under everything of the host; the package root re-exports names from
# the concepts lazily, so it sits on top.
CONCEPTS = (
    "sdk",
    "base",
    "wasm",
    "plugins",
    "connectors",
    "pipeline",
    "testing",
    "cli",
    "root",
)


def concept_of(module: str) -> str:
    """The concept folder a module of host/ or sdk/ belongs to (a name of CONCEPTS)."""
    parts = module.split(".")
    if parts[0] == "dataflare":
        return "sdk"
    if len(parts) == 1:
        return "root"
    if parts[1].startswith("_"):
        return "base"
    return parts[1]


def upward_imports(graph: ImportGraph, order: tuple[str, ...]) -> list[str]:
    """Imports from a concept into a higher one (or into a concept the order does not name)."""
    rank = {name: at for at, name in enumerate(order)}
    found = []
    for module, imports in sorted(graph.imports.items()):
        here = rank.get(concept_of(module), -1)
        for i in imports:
            if i.internal and rank.get(concept_of(i.target), len(order)) > here:
                found.append(f"{module} -> {i.target} (line {i.line})")
    return found


def test_no_import_circle_in_host_or_sdk() -> None:
    """No module reaches itself through imports (inside functions and TYPE_CHECKING too)."""
    assert GRAPH.cycles() == []


def test_the_graph_sees_a_circle_made_on_purpose(tmp_path: Path) -> None:
    """A circle through a function-level import and a ``from package import module``."""
    package = tmp_path / "circle"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "a.py").write_text("def f():\n    from circle.b import g\n", encoding="utf-8")
    (package / "b.py").write_text("from circle import c\n", encoding="utf-8")
    (package / "c.py").write_text("from . import a\n", encoding="utf-8")
    (package / "d.py").write_text("import circle.a\n", encoding="utf-8")  # into it, not in it
    assert ImportGraph.of(package).cycles() == [["circle.a", "circle.b", "circle.c"]]


def test_the_graph_resolves_relative_and_typing_imports(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.sub._x import X\n",
        encoding="utf-8",
    )
    (package / "sub" / "__init__.py").write_text("from ._x import X\n", encoding="utf-8")
    (package / "sub" / "_x.py").write_text("import json\nfrom .. import sub\n", encoding="utf-8")
    graph = ImportGraph.of(package)
    assert graph.edges("pkg") == {"pkg.sub._x"}
    assert [i.typing_only for i in graph.imports["pkg"] if i.internal] == [True]
    assert graph.edges("pkg.sub") == {"pkg.sub._x"}
    assert graph.edges("pkg.sub._x") == {"pkg.sub"}
    assert [i.target for i in graph.imports["pkg.sub._x"] if not i.internal] == ["json"]


def test_no_upward_import_between_concept_folders() -> None:
    """sdk < host base modules < wasm < plugins < connectors < pipeline < testing < cli."""
    assert {concept_of(module) for module in GRAPH.files} == set(CONCEPTS)
    assert upward_imports(GRAPH, CONCEPTS) == []


def test_an_upward_import_is_seen() -> None:
    """The same graph under an order that puts the pipeline below the plugins fails."""
    swapped = ("sdk", "base", "wasm", "pipeline", "plugins", "connectors", "testing", "cli")
    found = upward_imports(GRAPH, (*swapped, "root"))
    assert any(line.startswith("dataflare_host.pipeline.") for line in found), found


WASM = "dataflare_host.wasm"
PROTOCOL = "dataflare_host.wasm.sandbox.protocol"
CHILD = "dataflare_host.wasm.sandbox.child"
SERVER = "dataflare_host.wasm.sandbox.server"
# Standard-library-only modules both sides of the pipe use, like the protocol: the time a
# limit charges is counted the same way by the host and by the sandbox process.
SHARED = (
    PROTOCOL,
    "dataflare_host.wasm.sandbox._charged_time",
    "dataflare_host._ownership",
    "dataflare_host.wasm.sandbox.plugin_sources",
)


def test_wasm_never_imports_plugins() -> None:
    """wasm/ is build + sandbox; the backends (native, WASM) live in plugins/."""
    assert GRAPH.edges_between(WASM, "dataflare_host.plugins") == []


def test_an_import_from_wasm_into_plugins_is_seen() -> None:
    """The plugins' WASM backend imports the sandbox: the reverse direction is what is refused."""
    assert GRAPH.edges_between("dataflare_host.plugins", WASM)


def lean_offenders(graph: ImportGraph, module: str, internal_ok: tuple[str, ...]) -> list[str]:
    """Imports of ``module`` beyond the standard library, wasmtime and ``internal_ok``."""
    found = []
    for i in graph.imports[module]:
        if i.internal:
            if not any(_under(i.target, allowed) for allowed in internal_ok):
                found.append(f"{module} -> {i.target} (line {i.line})")
        elif i.target.split(".")[0] not in sys.stdlib_module_names and (
            module in SHARED or i.target.split(".")[0] != "wasmtime"
        ):
            found.append(f"{module} -> {i.target} (line {i.line})")
    return found


def sandbox_side(graph: ImportGraph) -> dict[str, tuple[str, ...]]:
    """The modules a sandbox process or the fork server runs, and what each may import."""
    sides: dict[str, tuple[str, ...]] = dict.fromkeys(SHARED, ())
    for module in graph.files:
        if _under(module, CHILD):
            sides[module] = (*SHARED, CHILD)
        elif _under(module, SERVER):
            sides[module] = (*SHARED, CHILD, SERVER)
    return sides


def test_the_sandbox_side_imports_only_the_stdlib_wasmtime_and_the_protocol() -> None:
    """child/ (and the server, which forks it) import nothing of the host but the protocol
    and the shared modules; those are standard library only, so the host reads them without
    wasmtime."""
    sides = sandbox_side(GRAPH)
    assert {CHILD + "._main", CHILD + "._instance", SERVER + "._main"} <= set(sides)
    offenders = [
        line for module, allowed in sides.items() for line in lean_offenders(GRAPH, module, allowed)
    ]
    assert offenders == []


def test_a_child_importing_the_host_is_seen(tmp_path: Path) -> None:
    """A child-side module importing dataflare or the host, or the protocol importing wasmtime."""
    root = tmp_path / "dataflare_host"
    for folder in ("wasm/sandbox/child", "wasm/sandbox/host"):
        (root / folder).mkdir(parents=True)
    (root / "_cache.py").write_text("", encoding="utf-8")
    (root / "wasm/sandbox/host/_limits.py").write_text("", encoding="utf-8")
    (root / "wasm/sandbox/protocol.py").write_text("import struct, wasmtime\n", encoding="utf-8")
    (root / "wasm/sandbox/child/_main.py").write_text(
        "import os, wasmtime\nfrom dataflare_host.wasm.sandbox import protocol\n"
        "def load():\n    from dataflare_host._cache import cache_root\n    import attrs\n"
        "    from dataflare_host.wasm.sandbox.host import _limits\n",
        encoding="utf-8",
    )
    graph = ImportGraph.of(root)
    assert lean_offenders(graph, CHILD + "._main", (PROTOCOL, CHILD)) == [
        f"{CHILD}._main -> dataflare_host._cache (line 4)",
        f"{CHILD}._main -> attrs (line 5)",
        f"{CHILD}._main -> dataflare_host.wasm.sandbox.host._limits (line 6)",
    ]
    assert lean_offenders(graph, PROTOCOL, ()) == [f"{PROTOCOL} -> wasmtime (line 1)"]


def test_the_host_side_reaches_the_sandbox_only_through_the_protocol() -> None:
    """Frames and constants come from the protocol, never from the child's or server's modules
    (a host importing them would import what runs in another process)."""
    sides = sandbox_side(GRAPH)
    offenders = [
        line
        for target in (CHILD, SERVER)
        for line in GRAPH.edges_between("dataflare", target) + GRAPH.edges_between(
            "dataflare_host", target
        )
        if line.split(" -> ")[0] not in sides
    ]
    assert offenders == []
    assert GRAPH.edges_between(SERVER, CHILD), "the probe: the server does import the child"


# Importing dataflare_host.wasm.sandbox.child._main runs these packages' __init__ first.
SANDBOX_PATH = ("dataflare_host", WASM, "dataflare_host.wasm.sandbox", CHILD, SERVER)


def runtime_imports_of_package(graph: ImportGraph, package: str) -> list[str]:
    """What a package's ``__init__`` imports when it runs (TYPE_CHECKING and functions aside)."""
    tree = ast.parse(graph.files[package].read_text(encoding="utf-8"))
    found = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            found.append(node.module or ".")
    return found


def test_the_packages_on_the_sandbox_path_import_nothing() -> None:
    """Their ``__init__`` runs in every sandbox process: typing and the lazy-attribute helper
    only (the names they export load on first use, in the host)."""
    for package in SANDBOX_PATH:
        extra = set(runtime_imports_of_package(GRAPH, package)) - {"typing", "dataflare_host._lazy"}
        assert not extra, f"{package} imports {extra} on the sandbox process's path"
    assert runtime_imports_of_package(GRAPH, "dataflare_host.plugins"), "the probe sees imports"


# --- no module over 600 lines ------------------------------------------------------------

MAX_LINES = 600

def oversized(files: Mapping[str, Path], limit: int = MAX_LINES) -> dict[str, int]:
    """Files over ``limit`` lines, by path relative to the checkout, with their length."""
    lengths = {
        path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path): len(
            path.read_text(encoding="utf-8").splitlines()
        )
        for path in files.values()
    }
    return {name: lines for name, lines in sorted(lengths.items()) if lines > limit}


def test_no_module_over_600_lines() -> None:
    """One job per module: past 600 lines a module is doing several."""
    assert oversized(GRAPH.files) == {}


def test_a_long_module_is_seen(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "long.py").write_text("x = 1\n" * (MAX_LINES + 1), encoding="utf-8")
    (package / "short.py").write_text("x = 1\n" * MAX_LINES, encoding="utf-8")
    over = oversized(ImportGraph.of(package).files)
    assert over == {str(package / "long.py"): MAX_LINES + 1}
