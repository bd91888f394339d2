"""Decorators mark and return the function; misuse fails when applied; finding and params."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

import dataflare
from dataflare import ConfigurationError, PluginKind, Record
from dataflare.runtime import Dispatcher, find_plugin

KIND_DECORATORS: dict[str, Callable[..., Any]] = {
    "filter": dataflare.filter,
    "map": dataflare.map,
    "filter_map": dataflare.filter_map,
    "array_map": dataflare.array_map,
    "aggregate": dataflare.aggregate,
}
ONE_RECORD_KINDS = ["filter", "map", "filter_map", "array_map"]


def _plugin_function(kind: str, *, context: bool = False) -> Callable[..., Any]:
    """A fresh function with the right shape for ``kind``."""
    if kind == "aggregate":
        if context:

            def plugin_fn(acc: bytes, record: Record, ctx: object) -> bytes:
                return acc
        else:

            def plugin_fn(acc: bytes, record: Record) -> bytes:  # type: ignore[misc]
                return acc
    elif context:

        def plugin_fn(record: Record, ctx: object) -> Any:  # type: ignore[misc]
            return record
    else:

        def plugin_fn(record: Record) -> Any:  # type: ignore[misc]
            return record

    return plugin_fn


def _definition(func: Callable[..., Any]) -> dataflare.runtime.PluginDefinition:
    return find_plugin({"f": func}, "test").definition


# --- marking, not wrapping -------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(KIND_DECORATORS))
@pytest.mark.parametrize("context", [False, True])
def test_bare_decorator_returns_the_same_function(kind: str, context: bool) -> None:
    """@kind returns the very function it was given, still directly callable."""
    func = _plugin_function(kind, context=context)
    assert KIND_DECORATORS[kind](func) is func
    args = (b"acc",) if kind == "aggregate" else ()
    args += (Record(b"x"),) + ((None,) if context else ())
    assert func(*args) == (b"acc" if kind == "aggregate" else Record(b"x"))
    definition = _definition(func)
    assert definition.kind is PluginKind(kind)
    assert definition.name == func.__name__
    assert definition.takes_context is context
    assert definition.params is None


@pytest.mark.parametrize("kind", sorted(KIND_DECORATORS))
def test_parameterised_decorator_returns_the_same_function(kind: str) -> None:
    """@kind(name=..., params=...) returns the very function and records the options."""
    func = _plugin_function(kind, context=True)
    assert KIND_DECORATORS[kind](name="custom", params={"a": "1", "b": None})(func) is func
    definition = _definition(func)
    assert definition.name == "custom"
    assert dict(definition.params or {}) == {"a": "1", "b": None}
    assert definition.function is func


def test_parameterised_aggregate_records_initial_and_emit() -> None:
    """@aggregate(initial=..., emit="batch") records both; the defaults are b"" and each."""

    def total(acc: bytes, record: Record) -> bytes:
        return acc

    def other(acc: bytes, record: Record) -> bytes:
        return acc

    assert dataflare.aggregate(initial=b"0", emit="batch")(total) is total
    assert (_definition(total).initial, _definition(total).emit) == (
        b"0",
        dataflare.AggregateEmit.BATCH,
    )
    dataflare.aggregate(other)
    assert (_definition(other).initial, _definition(other).emit) == (
        b"",
        dataflare.AggregateEmit.EACH,
    )


def test_init_bare_and_parameterised_return_the_same_function() -> None:
    """@init and @init(params=...) return the function unchanged and still callable."""

    def setup(params: Mapping[str, str]) -> str:
        return "ctx"

    def setup2(params: Mapping[str, str]) -> str:
        return "ctx2"

    assert dataflare.init(setup) is setup
    assert dataflare.init(params={"p": None})(setup2) is setup2
    assert setup({}) == "ctx"
    assert setup2({}) == "ctx2"


def test_keyword_only_argument_with_default_is_allowed() -> None:
    """A keyword-only argument with a default does not count as a positional one."""

    def tagged(record: Record, *, tag: str = "x") -> Record:
        return record

    assert dataflare.map(tagged) is tagged


# --- misuse fails when the decorator is applied ----------------------------------------


def _assert_type_error_names(func_name: str, apply: Callable[[], object]) -> str:
    with pytest.raises(TypeError) as info:
        apply()
    message = str(info.value)
    assert func_name in message, message
    return message


@pytest.mark.parametrize("kind", ONE_RECORD_KINDS)
def test_too_many_arguments(kind: str) -> None:
    """A one-record kind taking three positional arguments is rejected, naming the function."""

    def three(a: object, b: object, c: object) -> None: ...

    message = _assert_type_error_names("three", lambda: KIND_DECORATORS[kind](three))
    assert "3 positional arguments" in message


@pytest.mark.parametrize("kind", sorted(KIND_DECORATORS))
def test_too_few_arguments(kind: str) -> None:
    """A function taking no arguments is rejected, naming the function."""

    def nothing() -> None: ...

    message = _assert_type_error_names("nothing", lambda: KIND_DECORATORS[kind](nothing))
    assert "0 positional arguments" in message


def test_aggregate_with_one_argument() -> None:
    """An aggregate must take the accumulator too."""

    def only_record(record: Record) -> bytes:
        return b""

    message = _assert_type_error_names("only_record", lambda: dataflare.aggregate(only_record))
    assert "accumulator, record" in message


def test_aggregate_with_four_arguments() -> None:
    """An aggregate takes at most (accumulator, record, context)."""

    def four(a: bytes, b: Record, c: object, d: object) -> bytes:
        return a

    _assert_type_error_names("four", lambda: dataflare.aggregate(initial=b"0")(four))


@pytest.mark.parametrize("kind", sorted(KIND_DECORATORS))
def test_var_positional(kind: str) -> None:
    """*args is rejected: the host passes arguments by position and needs to know how many."""

    def star(*records: Record) -> None: ...

    message = _assert_type_error_names("star", lambda: KIND_DECORATORS[kind](star))
    assert "*records" in message


def test_required_keyword_only() -> None:
    """A keyword-only argument without a default is rejected: the host never passes it."""

    def needs_kw(record: Record, *, extra: str) -> Record:
        return record

    message = _assert_type_error_names("needs_kw", lambda: dataflare.map(needs_kw))
    assert "'extra'" in message


@pytest.mark.parametrize("kind", ["filter", "map", "filter_map", "aggregate"])
def test_generator_only_for_array_map(kind: str) -> None:
    """A generator is rejected for every kind but array_map."""
    if kind == "aggregate":

        def gen(acc: bytes, record: Record) -> Any:
            yield acc
    else:

        def gen(record: Record) -> Any:  # type: ignore[misc]
            yield record

    message = _assert_type_error_names("gen", lambda: KIND_DECORATORS[kind](gen))
    assert "array_map" in message


def test_generator_array_map_is_accepted() -> None:
    """An array_map may yield its outputs."""

    def gen(record: Record) -> Any:
        yield record

    assert dataflare.array_map(gen) is gen


@pytest.mark.parametrize("kind", sorted(KIND_DECORATORS))
def test_async_function(kind: str) -> None:
    """async def is rejected, naming the function."""
    if kind == "aggregate":

        async def coro(acc: bytes, record: Record) -> bytes:
            return acc
    else:

        async def coro(record: Record) -> Record:  # type: ignore[misc]
            return record

    message = _assert_type_error_names("coro", lambda: KIND_DECORATORS[kind](coro))
    assert "async" in message


def test_async_generator() -> None:
    """An async generator is rejected even for array_map."""

    async def agen(record: Record) -> Any:
        yield record

    _assert_type_error_names("agen", lambda: dataflare.array_map(agen))


@pytest.mark.parametrize("kind", sorted(KIND_DECORATORS))
def test_class(kind: str) -> None:
    """A class is not a plugin function."""

    class Upper:
        def __init__(self, record: Record) -> None: ...

    _assert_type_error_names("Upper", lambda: KIND_DECORATORS[kind](Upper))


def test_init_on_a_class() -> None:
    """@init rejects a class too."""

    class Setup:
        pass

    _assert_type_error_names("Setup", lambda: dataflare.init(Setup))


@pytest.mark.parametrize("count", [0, 2])
def test_init_takes_exactly_one_argument(count: int) -> None:
    """@init must take (params)."""

    def none() -> None: ...

    def two(a: object, b: object) -> None: ...

    func = none if count == 0 else two
    _assert_type_error_names(func.__name__, lambda: dataflare.init(func))


@pytest.mark.parametrize(
    ("first", "second"),
    [("filter", "map"), ("map", "map"), ("filter_map", "array_map")],
)
def test_two_decorators(first: str, second: str) -> None:
    """Applying a second plugin decorator is rejected, naming the function."""

    def twice(record: Record) -> Any:
        return record

    KIND_DECORATORS[first](twice)
    message = _assert_type_error_names("twice", lambda: KIND_DECORATORS[second](twice))
    assert "one decorator" in message


def test_init_and_plugin_decorator_on_one_function() -> None:
    """A function cannot be both the init hook and the plugin."""

    def both(record: Record) -> Any:
        return record

    dataflare.filter(both)
    _assert_type_error_names("both", lambda: dataflare.init(both))


def test_failed_decoration_does_not_mark() -> None:
    """A rejected decoration leaves the function unmarked, so a fixed decorator applies."""

    def later(record: Record, a: object, b: object) -> Any:
        return record

    with pytest.raises(TypeError):
        dataflare.map(later)
    with pytest.raises(ConfigurationError, match="no plugin"):
        find_plugin({"later": later}, "mod")


BAD_PARAMS: list[object] = [["needle"], "needle", {"n": 1}, {1: "x"}, {"n": b"x"}]
BAD_PARAM_IDS = ["list", "str", "int-default", "int-name", "bytes-default"]


@pytest.mark.parametrize(
    ("kind", "params"),
    list(zip(sorted(KIND_DECORATORS), BAD_PARAMS, strict=True)),
    ids=[f"{k}-{i}" for k, i in zip(sorted(KIND_DECORATORS), BAD_PARAM_IDS, strict=True)],
)
def test_bad_params_spec_names_the_function(kind: str, params: object) -> None:
    """A params= that is not {str: str | None} is a TypeError naming the function and params=."""
    func = _plugin_function(kind, context=True)
    func.__name__ = func.__qualname__ = "spec_user"
    message = _assert_type_error_names(
        "spec_user", lambda: KIND_DECORATORS[kind](params=params)(func)
    )
    assert "params=" in message


@pytest.mark.parametrize("params", BAD_PARAMS, ids=BAD_PARAM_IDS)
def test_bad_init_params_spec_names_the_function(params: object) -> None:
    """@init(params=...) is checked the same way."""

    def hook(params: Mapping[str, str]) -> None: ...

    message = _assert_type_error_names("hook", lambda: dataflare.init(params=params)(hook))
    assert "params=" in message


@pytest.mark.parametrize(
    "initial", ["0", 0, None, bytearray(b"0")], ids=["str", "int", "none", "bytearray"]
)
def test_bad_aggregate_initial_names_the_function(initial: object) -> None:
    """initial= must be bytes; the error names the function, initial= and the bad value."""

    def total(acc: bytes, record: Record) -> bytes:
        return acc

    message = _assert_type_error_names("total", lambda: dataflare.aggregate(initial=initial)(total))
    assert "initial=" in message
    assert repr(initial) in message


@pytest.mark.parametrize("emit", ["every", None, 1])
def test_bad_aggregate_emit_names_the_function(emit: object) -> None:
    """emit= must be "each" or "batch"; the error names the function and the choices."""

    def total(acc: bytes, record: Record) -> bytes:
        return acc

    message = _assert_type_error_names("total", lambda: dataflare.aggregate(emit=emit)(total))
    assert "'each'" in message
    assert "'batch'" in message


# --- find_plugin -----------------------------------------------------------------------


def test_find_plugin_without_plugin() -> None:
    """A namespace with no decorated function is a ConfigurationError naming the origin."""

    def helper(record: Record) -> Record:
        return record

    with pytest.raises(ConfigurationError, match="no plugin") as info:
        find_plugin({"helper": helper, "x": 1, "dataflare": dataflare}, "plugins/empty.py")
    assert "plugins/empty.py" in str(info.value)


def assert_refused_naming(module: dict[str, Any], origin: str, *names: str) -> None:
    """find_plugin refuses ``module`` with a ConfigurationError naming ``origin`` and ``names``."""
    with pytest.raises(ConfigurationError) as info:
        find_plugin(module, origin)
    message = str(info.value)
    assert all(name in message for name in (origin, *names)), message


def test_find_plugin_with_two_plugins() -> None:
    """Two plugins are a ConfigurationError naming both and the origin."""

    @dataflare.filter
    def first_plugin(record: Record) -> bool:
        return True

    @dataflare.map(name="second_plugin")
    def renamed(record: Record) -> Record:
        return record

    assert_refused_naming(
        {"a": first_plugin, "b": renamed}, "plugins/two.py", "first_plugin", "second_plugin"
    )


def test_find_plugin_with_two_init_hooks() -> None:
    """Two @init hooks are a ConfigurationError naming both."""

    @dataflare.filter
    def keep(record: Record, ctx: object) -> bool:
        return True

    @dataflare.init
    def setup_one(params: Mapping[str, str]) -> None: ...

    @dataflare.init
    def setup_two(params: Mapping[str, str]) -> None: ...

    assert_refused_naming(
        {"k": keep, "s1": setup_one, "s2": setup_two}, "plugins/hooks.py", "setup_one", "setup_two"
    )


def test_find_plugin_counts_an_alias_once() -> None:
    """The same plugin under two names in a module is one plugin."""

    @dataflare.filter
    def keep(record: Record) -> bool:
        return True

    found = find_plugin({"keep": keep, "alias": keep}, "mod")
    assert found.definition.function is keep
    assert (found.name, found.kind, found.init, found.origin) == (
        "keep",
        PluginKind.FILTER,
        None,
        "mod",
    )


def test_find_plugin_conflicting_param_defaults() -> None:
    """A parameter declared by both the plugin and @init with different defaults is an error."""

    @dataflare.filter(params={"p": "1"})
    def keep(record: Record, ctx: object) -> bool:
        return True

    @dataflare.init(params={"p": "2"})
    def setup(params: Mapping[str, str]) -> None: ...

    with pytest.raises(ConfigurationError, match="'p'"):
        find_plugin({"k": keep, "s": setup}, "mod")


# --- resolve_params --------------------------------------------------------------------


def _declaring(
    params: Mapping[str, str | None] | None, init_params: Any = None
) -> dataflare.runtime.PluginModule:
    @dataflare.filter(params=params)
    def needle_filter(record: Record, ctx: object) -> bool:
        return True

    namespace: dict[str, object] = {"f": needle_filter}
    if init_params is not None:

        @dataflare.init(params=init_params)
        def setup(params: Mapping[str, str]) -> Mapping[str, str]:
            return params

        namespace["s"] = setup
    return find_plugin(namespace, "plugins/needle.py")


def test_unknown_param_suggests_the_close_name() -> None:
    """An unknown parameter is a ConfigurationError with a did-you-mean and the declared names."""
    module = _declaring({"needle": "error", "limit": "10"})
    with pytest.raises(ConfigurationError) as info:
        module.resolve_params({"neddle": "x"})
    message = str(info.value)
    assert "'neddle'" in message
    assert "did you mean 'needle'?" in message
    assert "limit, needle" in message
    assert "needle_filter" in message
    assert "plugins/needle.py" in message


def test_unknown_param_without_close_name() -> None:
    """No suggestion is made when nothing is close."""
    module = _declaring({"needle": "error"})
    with pytest.raises(ConfigurationError, match="'zzz'") as info:
        module.resolve_params({"zzz": "x"})
    assert "did you mean" not in str(info.value)


def test_plugin_declaring_no_params_rejects_any() -> None:
    """params={} declares that the plugin takes none."""
    module = _declaring({})
    with pytest.raises(ConfigurationError, match="no parameters"):
        module.resolve_params({"a": "1"})
    assert dict(module.resolve_params({})) == {}


def test_missing_required_param() -> None:
    """A required parameter (default None) that is not given is a ConfigurationError."""
    module = _declaring({"needle": None})
    with pytest.raises(ConfigurationError, match="needs parameter 'needle'"):
        module.resolve_params({})


def test_defaults_are_filled() -> None:
    """Given values win; missing ones take their declared default."""
    module = _declaring({"needle": "error", "limit": "10"})
    assert dict(module.resolve_params({"limit": "3"})) == {"needle": "error", "limit": "3"}


def test_init_params_are_declared_too() -> None:
    """Parameters declared on @init count as the plugin's."""
    module = _declaring({"needle": "error"}, init_params={"pattern": None})
    assert dict(module.params or {}) == {"needle": "error", "pattern": None}
    assert dict(module.resolve_params({"pattern": "a"})) == {"needle": "error", "pattern": "a"}
    with pytest.raises(ConfigurationError, match="needs parameter 'pattern'"):
        module.resolve_params({})


def test_undeclared_plugin_accepts_any_params() -> None:
    """A plugin that declares no parameters gets whatever it is given, unchanged."""
    module = _declaring(None)
    assert module.params is None
    assert dict(module.resolve_params({"anything": "1", "else": ""})) == {
        "anything": "1",
        "else": "",
    }


@pytest.mark.parametrize("declared", [None, {"limit": "10"}], ids=["undeclared", "declared"])
@pytest.mark.parametrize("given", [{"limit": 10}, {"limit": None}, {"limit": b"10"}])
def test_non_str_values_are_rejected(declared: Any, given: dict[str, object]) -> None:
    """A parameter value that is not a str is a ConfigurationError naming it."""
    module = _declaring(declared)
    with pytest.raises(ConfigurationError, match="'limit'"):
        module.resolve_params(given)  # type: ignore[arg-type]


def test_resolved_params_are_read_only() -> None:
    """The params a plugin receives cannot be changed by it."""
    resolved = _declaring({"needle": "e"}).resolve_params({})
    with pytest.raises(TypeError):
        resolved["needle"] = "x"  # type: ignore[index]


# --- init hooks ------------------------------------------------------------------------


def test_init_hook_raising_is_a_configuration_error() -> None:
    """An @init that raises is a ConfigurationError naming the plugin, the hook and the cause."""

    @dataflare.map
    def upper_plugin(record: Record, ctx: object) -> Record:
        return record

    @dataflare.init
    def broken_setup(params: Mapping[str, str]) -> None:
        raise KeyError("no such thing")

    module = find_plugin({"p": upper_plugin, "s": broken_setup}, "plugins/broken.py")
    with pytest.raises(ConfigurationError) as info:
        Dispatcher(module, {})
    message = str(info.value)
    assert "upper_plugin" in message
    assert "broken_setup" in message
    assert "KeyError" in message
    assert "no such thing" in message
    assert isinstance(info.value.__cause__, KeyError)


def test_init_return_value_is_the_context() -> None:
    """What @init returns is passed as the plugin's last argument; init runs once."""
    calls: list[dict[str, str]] = []
    sentinel = object()

    @dataflare.init(params={"tag": "t"})
    def setup(params: Mapping[str, str]) -> object:
        calls.append(dict(params))
        return sentinel

    seen: list[object] = []

    @dataflare.map
    def tag(record: Record, ctx: object) -> Record:
        seen.append(ctx)
        return record

    dispatcher = Dispatcher(find_plugin({"s": setup, "t": tag}, "mod"), {"tag": "x"})
    dispatcher.process([Record(b"a"), Record(b"b")])
    dispatcher.process([Record(b"c")])
    assert calls == [{"tag": "x"}]
    assert seen == [sentinel] * 3


def test_without_init_the_context_is_the_resolved_params() -> None:
    """A plugin taking a context but with no @init receives its params, defaults filled."""
    seen: list[dict[str, str]] = []

    @dataflare.filter(params={"needle": "error", "other": "o"})
    def keep(record: Record, ctx: Mapping[str, str]) -> bool:
        seen.append(dict(ctx))
        return True

    Dispatcher(find_plugin({"k": keep}, "mod"), {"needle": "x"}).process([Record(b"a")])
    assert seen == [{"needle": "x", "other": "o"}]
