"""What a decorator records about a plugin function, and finding it in a module."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import attrs

from dataflare._errors import ConfigurationError
from dataflare._kinds import AggregateEmit, PluginKind
from dataflare._windows import Window

from ._plugin_files import PluginFiles, plugin_files_of
from ._state import StateBounds

__all__ = [
    "MARK",
    "OPTIONAL_PARAM",
    "RESERVED_PARAM_PREFIX",
    "InitHook",
    "LookBackHook",
    "ParamSpec",
    "PluginDefinition",
    "PluginModule",
    "did_you_mean",
    "find_plugin",
    "resolve_params",
]

MARK = "__dataflare__"
"""Attribute under which decorators store their definition on the function."""

ParamSpec = Mapping[str, "str | None"]
"""Declared parameters: name -> default value, None for a required one, or
:data:`OPTIONAL_PARAM` for an optional one without a default."""

OPTIONAL_PARAM = "\x00dataflare:optional"
"""The declared default of an optional parameter (``dataflare.OPTIONAL``): when
it is not given, it is absent from the resolved params. A reserved text, so
that the WIT contract's ``option<string>`` default carries it unchanged and
both runtimes resolve parameters with the one rule below."""

RESERVED_PARAM_PREFIX = "dataflare."
"""Parameters the host sets for the SDK itself (e.g. ``dataflare.window``), never
checked against, nor shown to, the plugin's own parameters."""

_RESERVED_PARAMS = ("dataflare.window",)


def _freeze_params(params: Mapping[str, str | None] | None) -> ParamSpec | None:
    return None if params is None else MappingProxyType(dict(params))


@attrs.frozen
class PluginDefinition:
    """A plugin function and the options its decorator was given."""

    function: Callable[..., Any] = attrs.field(eq=False)
    kind: PluginKind
    name: str
    takes_context: bool
    params: ParamSpec | None = attrs.field(default=None, converter=_freeze_params)
    initial: bytes = b""
    emit: AggregateEmit = AggregateEmit.EACH
    window: Window | None = None
    state: StateBounds | None = None
    """The bounds of the plugin's :class:`~dataflare.KeyedState`, when it declares one."""


@attrs.frozen
class LookBackHook:
    """A ``@look_back`` function: sees warm-up records before processing starts."""

    function: Callable[..., Any] = attrs.field(eq=False)
    name: str
    takes_context: bool


@attrs.frozen
class InitHook:
    """An ``@init`` function: receives the parameters once, returns the context."""

    function: Callable[..., Any] = attrs.field(eq=False)
    name: str
    params: ParamSpec | None = attrs.field(default=None, converter=_freeze_params)


@attrs.frozen
class PluginModule:
    """The plugin a module defines: its function, its init hook and its parameters."""

    definition: PluginDefinition
    init: InitHook | None
    origin: str
    """Where the plugin came from (a file path or module name), for messages."""
    look_back: LookBackHook | None = None
    files: PluginFiles | None = None
    """The plugin's own files, so that an error names the line that raised it."""

    @property
    def name(self) -> str:
        """The plugin's name (its function's name unless the decorator set one)."""
        return self.definition.name

    @property
    def kind(self) -> PluginKind:
        """The plugin's kind."""
        return self.definition.kind

    @property
    def params(self) -> ParamSpec | None:
        """Every declared parameter, or None if the plugin accepts any."""
        declared = [
            spec
            for spec in (self.definition.params, self.init.params if self.init else None)
            if spec is not None
        ]
        if not declared:
            return None
        merged: dict[str, str | None] = {}
        for spec in declared:
            merged.update(spec)
        return MappingProxyType(merged)

    def resolve_params(self, given: Mapping[str, str]) -> Mapping[str, str]:
        """The parameters the plugin runs with: ``given`` checked and defaults filled.

        Raises :class:`ConfigurationError` for an unknown name (where the plugin
        declares its parameters), a missing required one, or a non-str value.
        """
        return resolve_params(f"plugin {self.name!r} ({self.origin})", self.params, given)


def resolve_params(
    label: str, declared: ParamSpec | None, given: Mapping[str, str]
) -> Mapping[str, str]:
    """``given`` checked against the ``declared`` parameters, with defaults filled.

    The one rule for both runtimes (the host checks a component's parameters with
    it too, against what the component describes). ``label`` names the plugin in
    messages; every error's ``setting`` is ``params``.

    >>> dict(resolve_params("plugin 'p'", {"needle": "x"}, {}))
    {'needle': 'x'}
    """
    reserved = {k: v for k, v in given.items() if str(k).startswith(RESERVED_PARAM_PREFIX)}
    for name in reserved:
        if name not in _RESERVED_PARAMS:
            raise ConfigurationError(
                f"{label}: {name!r} is not a DataFlare setting "
                f"(known: {', '.join(_RESERVED_PARAMS)})",
                setting="params",
            )
    given = {k: v for k, v in given.items() if k not in reserved}
    for name, value in given.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise ConfigurationError(
                f"{label}: parameter {name!r} must be a str mapped to a str (got "
                f"{type(value).__name__}); pass numbers as text, e.g. {{'limit': '10'}}",
                setting="params",
            )
    if declared is None:
        return MappingProxyType(dict(given))
    unknown = sorted(set(given) - set(declared))
    if unknown:
        takes = ", ".join(sorted(declared)) or "no parameters"
        hint = did_you_mean(unknown[0], declared)
        raise ConfigurationError(
            f"{label} has no parameter {unknown[0]!r}{hint}; it takes: {takes}",
            setting="params",
        )
    resolved: dict[str, str] = {}
    for name, default in declared.items():
        if name in given:
            resolved[name] = given[name]
        elif default == OPTIONAL_PARAM:
            continue  # absent means unset: the plugin reads params.get(name)
        elif default is None:
            raise ConfigurationError(
                # Says how for each place a plugin takes parameters from: a
                # pipeline's params: (dataflare run has no option for them) and
                # dataflare test's -e.
                f"{label} needs parameter {name!r}; in a pipeline, give it under its "
                f"params: ({name}: VALUE); with dataflare test, -e {name}=VALUE",
                setting="params",
            )
        else:
            resolved[name] = default
    return MappingProxyType(resolved)


def _edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            )
        previous = current
    return previous[-1]


def did_you_mean(name: str, choices: Mapping[str, object]) -> str:
    """`` (did you mean 'x'?)`` for the choice closest to ``name``, or ``""`` if none is close.

    >>> did_you_mean("neddle", {"needle": None})
    " (did you mean 'needle'?)"
    """
    # Hand-written because the WASM guest's stdlib has no difflib, and the
    # message must be the same natively and in a component.
    best = min(choices, key=lambda choice: (_edit_distance(name, choice), choice), default=None)
    if best is None or _edit_distance(name, best) > max(1, len(best) // 3):
        return ""
    return f" (did you mean {best!r}?)"


def find_plugin(namespace: Mapping[str, object], origin: str) -> PluginModule:
    """Find the one plugin (and at most one ``@init`` hook) among a module's names.

    Raises :class:`ConfigurationError` naming ``origin`` when there is no plugin
    or more than one.
    """
    plugins: list[PluginDefinition] = []
    hooks: list[InitHook] = []
    look_backs: list[LookBackHook] = []
    seen: set[int] = set()
    for value in list(namespace.values()):
        mark = getattr(value, MARK, None) if callable(value) else None
        if mark is None or id(mark) in seen:
            continue
        seen.add(id(mark))
        if isinstance(mark, PluginDefinition):
            plugins.append(mark)
        elif isinstance(mark, InitHook):
            hooks.append(mark)
        elif isinstance(mark, LookBackHook):
            look_backs.append(mark)
    if not plugins:
        raise ConfigurationError(
            f"{origin} defines no plugin: decorate one function with @filter, @map, "
            "@filter_map, @array_map or @aggregate from dataflare"
        )
    if len(plugins) > 1:
        names = ", ".join(sorted(p.name for p in plugins))
        raise ConfigurationError(
            f"{origin} defines {len(plugins)} plugins ({names}); "
            "a plugin file holds exactly one: move the others to their own files"
        )
    if len(hooks) > 1:
        names = ", ".join(sorted(h.name for h in hooks))
        raise ConfigurationError(f"{origin} defines {len(hooks)} @init hooks ({names}); keep one")
    if len(look_backs) > 1:
        names = ", ".join(sorted(h.name for h in look_backs))
        raise ConfigurationError(
            f"{origin} defines {len(look_backs)} @look_back hooks ({names}); keep one"
        )
    definition = plugins[0]
    hook = hooks[0] if hooks else None
    module = PluginModule(
        definition=definition,
        init=hook,
        origin=origin,
        look_back=look_backs[0] if look_backs else None,
        files=plugin_files_of(namespace, origin),
    )
    if definition.params is not None and hook is not None and hook.params is not None:
        for name in set(definition.params) & set(hook.params):
            if definition.params[name] != hook.params[name]:
                raise ConfigurationError(
                    f"{origin}: parameter {name!r} is declared by both @init and "
                    f"@{definition.kind} with different defaults; declare it once"
                )
    return module
