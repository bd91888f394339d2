"""Shared test configuration: Hypothesis profiles and paths to the project's files.

Profiles: ``dev`` (the default) runs 50 examples per property; ``ci`` (chosen when
the ``CI`` environment variable is set, or with ``HYPOTHESIS_PROFILE=ci``) runs
more, derandomized so a red build replays, with no deadline because shared CI
machines stall. ``HYPOTHESIS_PROFILE`` overrides both.
"""

from __future__ import annotations

import os
import sys
import threading
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
    """Builds plugin files into components once per test session, two at a time."""

    def __init__(self, out_dir: Path) -> None:
        self._out_dir = out_dir
        self._built: dict[Path, Path] = {}
        self._lock = threading.Lock()

    def __call__(self, source: Path) -> Path:
        """The component built from ``source`` (built on first request)."""
        from host._build import build_component

        source = source.resolve()
        with self._lock:
            if source in self._built:
                return self._built[source]
        target = self._out_dir / f"{source.parent.name}-{source.stem}.wasm"
        build_component(source, target)
        with self._lock:
            self._built[source] = target
        return target

    def many(self, sources: list[Path]) -> dict[Path, Path]:
        """Build several at once (componentize-py is a subprocess: two run in parallel)."""
        with ThreadPoolExecutor(max_workers=2) as pool:
            built = list(pool.map(self, sources))
        return dict(zip(sources, built, strict=True))


@pytest.fixture(scope="session")
def component_builder(tmp_path_factory: pytest.TempPathFactory) -> ComponentBuilder:
    """Session-wide builder; compiled artifacts are cached in a session directory too."""
    os.environ["DATAFLARE_CACHE_DIR"] = str(tmp_path_factory.mktemp("cwasm-cache"))
    return ComponentBuilder(tmp_path_factory.mktemp("components"))


@pytest.fixture(scope="session")
def example_components(component_builder: ComponentBuilder) -> dict[str, Path]:
    """Every guest example built to a component, by example name (file stem)."""
    sources = sorted(EXAMPLES.glob("*.py"))
    built = component_builder.many(sources)
    return {source.stem: wasm for source, wasm in built.items()}


from servers import postgres_server, redis_server  # noqa: E402,F401
