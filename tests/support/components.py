"""Components built from plugin files through the product's own build cache."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


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
