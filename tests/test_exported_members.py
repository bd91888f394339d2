"""The packages' public surface is exactly ``__all__``, all of it documented (httpx style)."""

from __future__ import annotations

import ast
import inspect
import itertools
from types import ModuleType

import pytest

import host
import sdk

PACKAGES = [sdk, host]


def public_names(package: ModuleType) -> set[str]:
    """Names a user may import from the package root: public, and not a submodule."""
    return {
        name
        for name, value in vars(package).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_all_is_the_public_surface(package: ModuleType) -> None:
    """__all__ lists every public name of the package root and nothing else."""
    assert set(package.__all__) == public_names(package)
    assert len(package.__all__) == len(set(package.__all__)), "duplicate names in __all__"


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_public_names_come_from_private_modules(package: ModuleType) -> None:
    """Every exported class and function is defined in a private module of the package."""
    for name in package.__all__:
        value = getattr(package, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__.startswith(f"{package.__name__}._"), (name, value.__module__)


@pytest.mark.parametrize(
    "qualname",
    [f"{package.__name__}.{name}" for package in PACKAGES for name in package.__all__],
)
def test_every_public_name_has_a_docstring(qualname: str) -> None:
    """Each exported function, class and constant says what it is."""
    package_name, name = qualname.split(".")
    package = {p.__name__: p for p in PACKAGES}[package_name]
    value = getattr(package, name)
    if inspect.isclass(value) or inspect.isfunction(value):
        doc = value.__doc__
    else:
        # Constants and type aliases carry their docstring in their module's source.
        doc = _attribute_docstring(package, name)
    assert doc, f"{qualname} has no docstring"
    assert doc.strip(), f"{qualname} has a blank docstring"


def _attribute_docstring(package: ModuleType, name: str) -> str | None:
    """The string literal right after ``name = ...`` in the module that defines it."""
    for module in _private_modules(package):
        tree = ast.parse(inspect.getsource(module))
        body = tree.body
        for statement, following in itertools.pairwise(body):
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


def _private_modules(package: ModuleType) -> list[ModuleType]:
    return [
        value
        for key, value in vars(package).items()
        if key.startswith("_") and inspect.ismodule(value)
    ]


def test_package_docstrings() -> None:
    """Both packages say what they are."""
    assert sdk.__doc__
    assert host.__doc__
