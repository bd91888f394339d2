"""The one loader: any plugin reference in, a running :class:`Plugin` out.

This is the only module of the host that constructs a backend. A reference is

- a ``.wasm`` path: the component, sandboxed;
- a ``.py`` path or a package folder path (``__init__.py`` holding the plugin,
  helper modules beside it, dependencies in its ``pyproject.toml``): imported
  natively, or with ``runtime="wasm"`` built into a component through the
  shared build cache (:func:`component_for`) and sandboxed; the host never runs
  the plugin itself to build it;
- a plugin name: an entry point in ``dataflare.plugins``, a ``NAME.py`` or a
  ``NAME/`` package in ``base_dir`` or its ``plugins/`` folder, or an importable
  module;
- a decorated function or a module object (the author's test kit).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

from dataflare import ConfigurationError
from dataflare.runtime import MARK, find_plugin
from dataflare_host.plugins._interface import Plugin
from dataflare_host.plugins._native import ModuleCache, NativePlugin, import_plugin_module

__all__ = ["PLUGIN_GROUP", "PluginReference", "Runtime", "load_plugin"]

PLUGIN_GROUP = "dataflare.plugins"
"""Entry point group where packages register native plugins by name."""

Runtime = Literal["native", "wasm"]
"""Where a plugin runs: in this process, or sandboxed in a WASM component."""

PluginReference = str | os.PathLike[str] | Callable[..., Any] | ModuleType
"""What :func:`load_plugin` accepts: a path, a name, a decorated function or a module."""

if TYPE_CHECKING:  # the wasm package loads lazily: wasmtime is heavy to import
    from dataflare_host.wasm import SandboxLimits


def load_plugin(
    reference: PluginReference,
    params: Mapping[str, str] | None = None,
    *,
    runtime: Runtime | None = None,
    sandbox: SandboxLimits | None = None,
    base_dir: str | os.PathLike[str] | None = None,
    modules: ModuleCache | None = None,
) -> Plugin:
    """Load the plugin ``reference`` names, with ``params``, ready to process batches.

    ``runtime`` defaults to what the reference is (a ``.wasm`` runs sandboxed,
    everything else natively); ``runtime="wasm"`` with a ``.py`` file builds it
    (cached by content). ``sandbox`` sets a WASM plugin's limits. ``base_dir`` is
    where plugin names are looked for (a pipeline file's folder). ``modules``
    lets repeated loads of an unchanged file share one import (the test kit's
    property tests load a plugin per example).

    >>> plugin = load_plugin("guest_examples/uppercase_map.py")  # doctest: +SKIP
    >>> plugin.kind  # doctest: +SKIP
    <PluginKind.MAP: 'map'>
    """
    if isinstance(reference, ModuleType) or callable(reference):
        return _load_object(reference, params, runtime)
    text = os.fspath(reference)
    if text.endswith(".wasm"):
        if runtime == "native":
            raise ConfigurationError(f"{text} is a WASM component: it cannot run natively")
        return _wasm(Path(text), params, sandbox)
    if text.endswith(".py") or _is_package_path(reference):
        path = Path(text)
        if runtime == "wasm":
            _prestart_sandbox()  # boots while the build cache hashes the plugin's inputs
            from dataflare_host.wasm import component_for

            return _wasm(component_for(path), params, sandbox)
        return NativePlugin(import_plugin_module(path, modules), params)
    return _load_by_name(text, params, runtime, sandbox, Path(base_dir or "."), modules)


def _is_package_path(reference: str | os.PathLike[str]) -> bool:
    # A bare name ("tag") is a plugin name even when a folder of that name is
    # in the working directory; a path ("./tag", Path("tag")) is a path.
    text = os.fspath(reference)
    is_path = isinstance(reference, os.PathLike) or os.sep in text or "/" in text
    return is_path and Path(text).is_dir()


def _prestart_sandbox() -> None:
    # A sandbox process is slow to boot (Python + wasmtime); started now, it
    # boots on the other core while this process imports the WASM backend.
    from dataflare_host.wasm.sandbox.host._process import prestart

    prestart()


def _wasm(path: Path, params: Mapping[str, str] | None, sandbox: SandboxLimits | None) -> Plugin:
    _prestart_sandbox()
    from dataflare_host.plugins._wasm import WasmPlugin

    return WasmPlugin(path, params, sandbox)


def _load_object(
    target: Callable[..., Any] | ModuleType,
    params: Mapping[str, str] | None,
    runtime: Runtime | None,
) -> Plugin:
    origin = getattr(target, "__name__", repr(target))
    if runtime == "wasm":
        raise ConfigurationError(
            f"{origin} is a Python object: only a .py file or a package folder can be built "
            "into a WASM component"
        )
    if isinstance(target, ModuleType):
        return NativePlugin(find_plugin(vars(target), origin), params)
    if getattr(target, MARK, None) is None:
        raise ConfigurationError(
            f"{target!r} is not a DataFlare plugin: decorate it with @filter, @map, ..."
        )
    return NativePlugin(find_plugin({origin: target}, origin), params)


def _load_by_name(
    name: str,
    params: Mapping[str, str] | None,
    runtime: Runtime | None,
    sandbox: SandboxLimits | None,
    base: Path,
    modules: ModuleCache | None,
) -> Plugin:
    for candidate in (
        base / f"{name}.py",
        base / "plugins" / f"{name}.py",
        base / name,
        base / "plugins" / name,
    ):
        if candidate.is_file() or (candidate / "__init__.py").is_file():
            return load_plugin(candidate, params, runtime=runtime, sandbox=sandbox, modules=modules)
    if runtime == "wasm":
        raise ConfigurationError(
            f"no plugin file {name}.py or package {name}/ beside the pipeline file or in its "
            "plugins/ folder to build into a WASM component"
        )
    # Scanned only here, for a name no file answers: importlib.metadata costs start-up.
    from importlib.metadata import entry_points

    for point in entry_points(group=PLUGIN_GROUP):
        if point.name == name:
            try:
                target: Any = point.load()
            except Exception as exc:  # whatever a broken package raises, name the package
                raise ConfigurationError(
                    f"plugin {name!r} ({point.value}, entry point group {PLUGIN_GROUP}) failed "
                    f"to load: {type(exc).__name__}: {exc}"
                ) from exc
            namespace = (
                vars(target)
                if isinstance(target, ModuleType)
                else {name: target}
            )
            return NativePlugin(find_plugin(namespace, f"entry point {point.value}"), params)
    try:
        return NativePlugin(import_plugin_module(name), params)
    except ConfigurationError as exc:
        raise ConfigurationError(
            f"no native plugin named {name!r}: not an entry point in {PLUGIN_GROUP}, "
            f"no {name}.py beside the pipeline file or in its plugins/ directory, "
            "and not an importable module"
        ) from exc
