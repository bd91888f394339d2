"""Shared test configuration: Hypothesis profiles, test folders, paths, built components.

Folders: ``unit/`` needs nothing (the fast loop: ``pytest tests/unit``),
``pipelines/`` runs whole pipelines (some on WASM components), ``wasm/`` builds
and runs components, ``server/`` starts PostgreSQL and Redis.

Profiles: ``dev`` (the default) runs 50 examples per property; ``ci`` (chosen when
the ``CI`` environment variable is set, or with ``HYPOTHESIS_PROFILE=ci``) runs
more, derandomized so a red build replays, with no deadline because shared CI
machines stall. ``HYPOTHESIS_PROFILE`` overrides both.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    derandomize=True,
    print_blob=True,
    # Example generation is slower on shared runners; that is not a bug in a test.
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "guest_examples"

# Tests never write the user's cache: builds and compiled artifacts go to a
# persistent folder under the project (reused across runs, keyed by content).
# Subprocesses (the CLI tests) inherit it.
TEST_CACHE = Path(os.environ.get("DATAFLARE_TEST_CACHE_DIR") or REPO / ".dataflare" / "test-cache")
os.environ["DATAFLARE_CACHE_DIR"] = str(TEST_CACHE)


_FOLDER_MARKS = {"wasm": "wasm", "server": "server", "cluster": "cluster"}
# With ``pytest -n``, tests sharing one of these session fixtures share a worker:
# a second PostgreSQL, OpenSearch node or Ray cluster would cost more than it saves.
_SHARED_WORKER = {"server": "servers", "cluster": "ray-cluster"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test's folder says what it needs: tests/wasm builds components, tests/server
    starts servers; the folder's marker lets ``-m`` select across folders.

    For ``pytest -n`` (``--dist loadgroup``) every test gets a group: its file, or
    the shared worker of its folder. Long groups (servers, the Ray cluster, files
    with a slow test) are handed out first, so the workers finish together rather
    than one waiting on a long file taken last.
    """
    for item in items:
        folder = (
            item.path.relative_to(REPO / "tests").parts[0]
            if item.path.is_relative_to(REPO / "tests")
            else None
        )
        mark = _FOLDER_MARKS.get(folder or "")
        if mark is not None:
            item.add_marker(mark)
        group = _SHARED_WORKER.get(folder or "", str(item.path))
        item.add_marker(pytest.mark.xdist_group(group))
    long_groups = {
        _group_of(item)
        for item in items
        if item.get_closest_marker("slow") is not None
        or _group_of(item) in _SHARED_WORKER.values()
    }
    items.sort(key=lambda item: _group_of(item) not in long_groups)  # stable: order kept


def _group_of(item: pytest.Item) -> str:
    marker = item.get_closest_marker("xdist_group")
    assert marker is not None
    return str(marker.args[0])


@pytest.fixture
def examples_dir() -> Path:
    """The directory holding one example plugin per file."""
    return EXAMPLES


@pytest.fixture
def dataflare_exe() -> Path:
    """The installed ``dataflare`` console script of the interpreter running the tests."""
    exe = Path(sys.executable).parent / "dataflare"
    assert exe.is_file(), f"{exe} is missing: install the project (pip install -e .)"
    return exe


class ComponentBuilder:
    """Components from plugin files, through the product's own build cache, two builds at a time.

    The cache lives under the project (``.dataflare/test-cache``, or
    ``$DATAFLARE_TEST_CACHE_DIR``) and is keyed by the build's inputs, so a
    component is built once and reused by every later test run until the
    plugin, the SDK or the WIT contract changes.
    """

    def __call__(self, source: Path) -> Path:
        """The component built from ``source`` (built only on a cache miss)."""
        from dataflare_host.wasm import component_for

        return component_for(source.resolve())

    def many(self, sources: list[Path]) -> dict[Path, Path]:
        """Several at once (componentize-py is a subprocess: two run in parallel)."""
        with ThreadPoolExecutor(max_workers=2) as pool:
            built = list(pool.map(self, sources))
        return dict(zip(sources, built, strict=True))


@pytest.fixture(scope="session")
def component_builder() -> ComponentBuilder:
    """Session-wide builder over the persistent test cache."""
    return ComponentBuilder()


@pytest.fixture(scope="session")
def example_components(component_builder: ComponentBuilder) -> dict[str, Path]:
    """Every guest example built to a component, by example name (file stem)."""
    sources = sorted(EXAMPLES.glob("*.py"))
    built = component_builder.many(sources)
    return {source.stem: wasm for source, wasm in built.items()}


from servers import opensearch_server, postgres_server, redis_server  # noqa: E402,F401
