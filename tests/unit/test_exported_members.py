"""The packages' public surface is exactly ``__all__``, all of it documented (httpx style)."""

from __future__ import annotations

import ast
import importlib
import inspect
import itertools
from types import ModuleType

import pytest

PACKAGE_NAMES = [
    "dataflare",
    "dataflare.runtime",
    "dataflare_host",
    "dataflare_host.plugins",
    "dataflare_host.wasm",
    "dataflare_host.pipeline",
    "dataflare_host.connectors",
    "dataflare_host.cli",
    "dataflare_host.testing",
]
PACKAGES = [importlib.import_module(name) for name in PACKAGE_NAMES]


def public_names(package: ModuleType) -> set[str]:
    """Names a user may import from the package root: public, and not a submodule."""
    return {
        name
        for name, value in vars(package).items()
        if not name.startswith("_") and not inspect.ismodule(value)
        and not (name == "annotations" and value.__class__.__name__ == "_Feature")
        and name != "TYPE_CHECKING"
    }


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_all_is_the_public_surface(package: ModuleType) -> None:
    """__all__ lists every public name of the package root and nothing else."""
    for name in package.__all__:  # lazy packages load their names on access
        getattr(package, name)
    assert public_names(package) <= set(package.__all__)
    assert len(package.__all__) == len(set(package.__all__)), "duplicate names in __all__"


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_public_names_come_from_private_modules(package: ModuleType) -> None:
    """Every exported class and function is defined in a private module of the package."""
    for name in package.__all__:
        value = getattr(package, name)
        if (inspect.isclass(value) or inspect.isfunction(value)) and value.__module__ != "typing":
            module = value.__module__
            assert module.startswith(f"{package.__name__}."), (name, module)
            assert "._" in module, (name, module)


@pytest.mark.parametrize(
    "qualname",
    [f"{package.__name__}:{name}" for package in PACKAGES for name in package.__all__],
)
def test_every_public_name_has_a_docstring(qualname: str) -> None:
    """Each exported function, class and constant says what it is."""
    package_name, name = qualname.split(":")
    package = importlib.import_module(package_name)
    value = getattr(package, name)
    if inspect.isclass(value) or inspect.isfunction(value):
        doc = value.__doc__
    elif getattr(value, "help", None):  # a click command documents itself in its help
        doc = value.help
    else:
        # Constants and type aliases carry their docstring in their module's source.
        doc = _attribute_docstring(package, name)
    assert doc, f"{qualname} has no docstring"
    assert doc.strip(), f"{qualname} has a blank docstring"


def test_the_author_face_is_only_what_authors_use() -> None:
    """``import dataflare`` exports decorators, Record, errors, windows, kinds and the
    plugin state only."""
    import dataflare

    assert set(dataflare.__all__) == {
        "aggregate", "array_map", "filter", "filter_map", "init", "look_back", "map",
        "Record",
        "PluginError", "ConfigurationError", "ProcessingError", "LimitExceededError",
        "PluginIOError", "SerializationError",
        "Window", "tumbling", "sliding",
        "PluginKind", "AggregateEmit",
        "OPTIONAL",
        "KeyedState",
    }


def _attribute_docstring(package: ModuleType, name: str) -> str | None:
    """The string literal right after ``name = ...`` in the module that defines it."""
    for module in _defining_modules(package):
        tree = ast.parse(inspect.getsource(module))
        for statement, following in itertools.pairwise(tree.body):
            targets = (
                statement.targets if isinstance(statement, ast.Assign)
                else [statement.target] if isinstance(statement, ast.AnnAssign)
                else []
            )
            if any(isinstance(t, ast.Name) and t.id == name for t in targets) and (
                isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                return following.value.value
    return None


def _defining_modules(package: ModuleType) -> list[ModuleType]:
    import pkgutil

    return [
        importlib.import_module(f"{package.__name__}.{info.name}")
        for info in pkgutil.iter_modules(package.__path__)
        if info.name.startswith("_") and info.name != "__main__"
    ]


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_package_docstrings(package: ModuleType) -> None:
    """Every package says what it is."""
    assert package.__doc__
    assert package.__doc__.strip()


def test_names_that_moved_with_the_sandbox_still_import() -> None:
    """``Sandbox`` is ``SandboxLimits``; ``WasmPlugin`` lives in plugins/, and its old
    place (``dataflare_host.wasm``) still gives it, with a warning naming the new one."""
    import dataflare_host
    from dataflare_host import plugins, wasm

    assert dataflare_host.Sandbox is dataflare_host.SandboxLimits is wasm.SandboxLimits
    assert wasm.Sandbox is wasm.SandboxLimits
    assert dataflare_host.WasmPlugin is plugins.WasmPlugin
    assert "WasmPlugin" not in wasm.__all__
    with pytest.warns(DeprecationWarning, match="import it from dataflare_host.plugins"):
        from dataflare_host.wasm import WasmPlugin
    assert WasmPlugin is plugins.WasmPlugin
    with pytest.raises(AttributeError):
        wasm.NoSuchName  # noqa: B018
