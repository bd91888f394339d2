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

import importlib.util
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

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
# The suite compiles more components (~40 of ~38 MB) than the default 1 GB cap
# holds: capped, every run evicted and recompiled a third of them (a warm run
# compiled ~20, seconds each). Tests of the cap set their own.
os.environ["DATAFLARE_CACHE_MAX_MB"] = "8192"
# Sandbox servers started by tests in caches of their own (not stopped at the end of
# the session, as the suite's cache's are) exit soon after their last use.
os.environ.setdefault("DATAFLARE_SANDBOX_SERVER_IDLE_S", "30")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The sandbox servers the suite started exit with it, not when idle minutes later
    (in the controller, or the one process without ``-n``: workers have ended)."""
    if hasattr(session.config, "workerinput"):
        return
    from dataflare_host.wasm.sandbox.host._spawn import stop_servers

    stop_servers()


_FOLDER_MARKS = {"wasm": "wasm", "server": "server", "cluster": "cluster"}
# With ``pytest -n``, tests sharing one of these session fixtures share a worker:
# a second PostgreSQL, OpenSearch node or Ray cluster would cost more than it saves.
_SHARED_WORKER = {"server": "servers", "cluster": "ray-cluster"}


def work_unit(nodeid: str) -> str:
    """What ``pytest -n`` hands to one worker: a test's file (module fixtures build
    and start things once), or the shared worker of its folder.

    >>> work_unit("tests/server/test_redis.py::test_x"), work_unit("tests/unit/test_a.py::t[1]")
    ('servers', 'tests/unit/test_a.py')
    """
    file = nodeid.split("::", 1)[0]
    parts = file.split("/")
    if len(parts) > 2 and parts[0] == "tests" and parts[1] in _SHARED_WORKER:
        return _SHARED_WORKER[parts[1]]
    return file


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test's folder says what it needs: tests/wasm builds components, tests/server
    starts servers; the folder's marker lets ``-m`` select across folders.

    Long work units (servers, the Ray cluster, files with a slow test) come first,
    so that with ``pytest -n`` the workers finish together rather than one waiting
    on a long file taken last.
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
    long_units = {
        work_unit(item.nodeid)
        for item in items
        if item.get_closest_marker("slow") is not None
        or work_unit(item.nodeid) in _SHARED_WORKER.values()
    }
    items.sort(key=lambda item: work_unit(item.nodeid) not in long_units)  # stable


if importlib.util.find_spec("xdist") is not None:

    def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
        """Hand out whole :func:`work_unit` s, in collection order (long ones first).

        xdist's own ``--dist loadgroup`` cannot be used: it tags node ids, which
        pytest 9 no longer lets a plugin change.
        """
        from xdist.scheduler import LoadScopeScheduling

        class WorkUnitScheduling(LoadScopeScheduling):
            def _split_scope(self, nodeid: str) -> str:
                return work_unit(nodeid)

        config.option.loadscopereorder = False  # keep the order chosen above
        return WorkUnitScheduling(config, log)


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
