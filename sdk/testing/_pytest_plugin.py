"""pytest plugin (entry point ``pytest11``): DataFlare fixtures for plugin authors' tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ._running import assert_parity as _assert_parity
from ._running import run_plugin as _run_plugin

__all__ = ["assert_parity", "plugin_path", "run_plugin"]


# Module scope: Hypothesis refuses function-scoped fixtures in @given tests,
# and none of these hold per-test state.
@pytest.fixture(scope="module")
def run_plugin() -> Callable[..., Any]:
    """``run_plugin(plugin, records, params=None)``: run a plugin exactly as the host does."""
    return _run_plugin


@pytest.fixture(scope="module")
def plugin_path(request: pytest.FixtureRequest) -> Path:
    """The plugin a ``test_NAME.py`` file tests: ``NAME.py`` beside it."""
    test_file = Path(str(request.path))
    return test_file.with_name(test_file.name.removeprefix("test_"))


@pytest.fixture(scope="module")
def assert_parity(plugin_path: Path) -> Callable[..., None]:
    """``assert_parity(plugin=None, batches=None, params=None, ...)``: native == WASM.

    Defaults to the plugin beside the test file, and to ``NAME.wasm`` beside it
    when that was built (``dataflare build``) after the last change to NAME.py.
    """

    def check(plugin: str | Path | None = None, *args: Any, **kwargs: Any) -> None:
        source = Path(plugin) if plugin is not None else plugin_path
        built = source.with_suffix(".wasm")
        fresh = built.is_file() and built.stat().st_mtime >= source.stat().st_mtime
        if "wasm" not in kwargs and fresh:
            kwargs["wasm"] = built
        _assert_parity(source, *args, **kwargs)

    return check
