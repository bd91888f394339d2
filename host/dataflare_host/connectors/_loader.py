"""Finding the source or sink class an entry point, a module or a plugin file defines.

This is the one path every connector takes, built-in or not: the built-ins are
registered by entry points in this project's own pyproject (exactly as a third
party registers one), and a pipeline's ``plugin_path:`` file is imported and
searched the same way. Either way the class is checked by
:func:`connector_class`, its parameters by :func:`resolve_connector_params`,
and it is instantiated by the pipeline with the same ``(config, params)`` call.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, TypeAlias

from dataflare import ConfigurationError
from dataflare.runtime import resolve_params
from dataflare_host._user_code import import_user_file

from ._base import Sink, Source

__all__ = [
    "ConnectorClass",
    "Role",
    "connector_class",
    "load_connector_file",
    "open_connector",
    "resolve_connector_params",
]

Role: TypeAlias = Literal["source", "sink"]
ConnectorClass: TypeAlias = "type[Source | Sink]"

_BASES: Mapping[str, type] = {"source": Source, "sink": Sink}


def connector_class(found: object, role: Role, origin: str) -> Any:
    """The ``role`` class ``found`` is, or the one a module ``found`` defines.

    ``origin`` names where it came from in messages (a file, an entry point).
    Raises :class:`ConfigurationError` when there is none, more than one, or
    ``found`` is something else (a sink where a source is wanted...).
    """
    base = _BASES[role]
    if isinstance(found, ModuleType):
        defined = [
            value
            for value in vars(found).values()
            if inspect.isclass(value)
            and issubclass(value, base)
            and value.__module__ == found.__name__
            and not inspect.isabstract(value)
        ]
        if not defined:
            other = "sink" if role == "source" else "source"
            hint = (
                f" (it defines a {other}: use it under {other}s:)"
                if any(
                    inspect.isclass(v) and issubclass(v, _BASES[other])
                    and v.__module__ == found.__name__
                    for v in vars(found).values()
                )
                else ""
            )
            raise ConfigurationError(
                f"{origin} defines no {role} (a subclass of "
                f"dataflare_host.connectors.{base.__name__}){hint}"
            )
        if len(defined) > 1:
            names = ", ".join(sorted(cls.__name__ for cls in defined))
            raise ConfigurationError(
                f"{origin} defines {len(defined)} {role}s ({names}); keep one per file"
            )
        found = defined[0]
    if not (inspect.isclass(found) and issubclass(found, base)):
        raise ConfigurationError(
            f"{origin} is {found!r}, not a {role} (a subclass of "
            f"dataflare_host.connectors.{base.__name__})"
        )
    if inspect.isabstract(found):
        missing = ", ".join(sorted(getattr(found, "__abstractmethods__", ())))
        raise ConfigurationError(f"{origin}: {found.__name__} does not implement {missing}")
    return found


def load_connector_file(path: Path, role: Role) -> Any:
    """Import the plugin file ``path`` and return the one ``role`` class it defines."""
    if path.suffix != ".py":
        raise ConfigurationError(f"{path} is not a .py file; a {role} plugin is Python")
    if not path.is_file():
        raise ConfigurationError(f"file {path} does not exist")
    # Kept in sys.modules: attrs and cattrs resolve a Config class's string
    # annotations through the module.
    module = import_user_file(
        path, prefix="dataflare_connector", label=f"{role} plugin", keep=True
    )
    return connector_class(module, role, f"{role} plugin {path}")


def resolve_connector_params(
    cls: ConnectorClass, given: Mapping[str, str], label: str
) -> Mapping[str, str]:
    """``given`` checked against ``cls.PARAMS`` with defaults filled (the processors' rule).

    A class that declares no ``PARAMS`` takes whatever it is given. Errors are
    :class:`ConfigurationError` with ``setting="params"``.
    """
    return resolve_params(label, cls.PARAMS, given)


def open_connector(
    reference: str | Path | ConnectorClass,
    role: Role,
    params: Mapping[str, str] | None = None,
    connection: Mapping[str, Any] | None = None,
) -> Any:
    """A source or sink (not yet connected), as a pipeline would make it: for plugin tests.

    ``reference`` is a plugin file or a class; ``params`` are checked against
    its declared ``PARAMS``; ``connection`` fills its ``Config``.
    """
    cls = (
        load_connector_file(Path(reference), role)
        if isinstance(reference, str | Path)
        else connector_class(reference, role, repr(reference))
    )
    label = f"{role} {cls.__name__!r}"
    resolved = resolve_connector_params(cls, params or {}, label)
    return cls(cls.Config(**(connection or {})), resolved)
