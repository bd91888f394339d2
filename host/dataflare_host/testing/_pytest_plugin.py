"""pytest plugin (entry point ``pytest11``): DataFlare fixtures for plugin authors' tests.

Loaded into every pytest run of an environment that has DataFlare installed, so
it imports nothing heavy itself: the test kit (Hypothesis, the host, wasmtime)
loads only when a test asks for one of these fixtures. Every fixture name
starts with ``dataflare_`` so it cannot clash with a project's own.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

__all__ = ["dataflare_assert_parity", "dataflare_plugin_path", "dataflare_run_plugin"]


# Module scope: Hypothesis refuses function-scoped fixtures in @given tests,
# and none of these hold per-test state.
@pytest.fixture(scope="module")
def dataflare_run_plugin() -> Callable[..., Any]:
    """``dataflare_run_plugin(plugin, records, params=None)``: run a plugin as the host does."""
    from dataflare_host.testing._running import run_plugin

    return run_plugin


@pytest.fixture(scope="module")
def dataflare_plugin_path(request: pytest.FixtureRequest) -> Path:
    """The plugin a ``test_NAME.py`` file tests: ``NAME.py`` beside it."""
    test_file = Path(str(request.path))
    return test_file.with_name(test_file.name.removeprefix("test_"))


@pytest.fixture(scope="module")
def dataflare_assert_parity(dataflare_plugin_path: Path) -> Callable[..., None]:
    """``dataflare_assert_parity(plugin=None, batches=None, params=None, ...)``: native == WASM.

    Defaults to the plugin beside the test file. The component comes from the
    build cache that ``dataflare build`` fills, keyed by the plugin's content: a
    plugin built once is not built again, and an edited one always is.
    """
    from dataflare_host.testing._running import assert_parity

    def check(plugin: str | Path | None = None, *args: Any, **kwargs: Any) -> None:
        assert_parity(plugin if plugin is not None else dataflare_plugin_path, *args, **kwargs)

    return check
