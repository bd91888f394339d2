"""Package attributes imported on first use (PEP 562), for packages whose parts are heavy."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``where[name]`` (a submodule) on first access.

    Keeps ``import dataflare_host`` and the pytest plugin cheap: wasmtime,
    psycopg, redis and Hypothesis load only when a name that needs them is used.

    >>> getattr_ = lazy_attributes("json", {"dumps": "decoder"})
    >>> getattr_("JSONDecoder") is None
    Traceback (most recent call last):
    ...
    AttributeError: module 'json' has no attribute 'JSONDecoder'
    """

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return __getattr__
