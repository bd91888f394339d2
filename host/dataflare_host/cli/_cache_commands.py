"""``dataflare cache info`` and ``dataflare cache clear``: the cache of built and compiled
WASM components, and the sandbox servers."""

from __future__ import annotations

import click

from dataflare import ConfigurationError
from dataflare_host.cli._failure import fail

__all__ = ["cache"]

_MB = 1 << 20  # the unit of DATAFLARE_CACHE_MAX_MB


@click.group()
def cache() -> None:
    """Show or clear the cache of built and compiled WASM components."""


@cache.command("info")
def cache_info_command() -> None:
    """Where the cache is, what each folder holds, and the size cap.

    builds/ holds components by their build's inputs, compiled/ their compiled
    artifacts, keys/ which artifact a component file maps to; when compiled/
    passes its cap (DATAFLARE_CACHE_MAX_MB) the least recently used artifacts
    are deleted.
    """
    from dataflare_host import _cache

    try:
        cap = _cache.cache_max_bytes()
    except ConfigurationError as error:
        fail(error)
        return
    click.echo(f"cache: {_cache.cache_root()}")
    for folder in _cache.cache_info():
        click.echo(
            f"  {folder.name + '/':<10} {folder.files:>4} file(s) {folder.bytes / _MB:>10.1f} MB"
        )
    click.echo(f"  compiled/ cap: {cap / _MB:.1f} MB (DATAFLARE_CACHE_MAX_MB)")
    from dataflare_host.wasm._sandbox_spawn import answering_servers, idle_seconds

    idle = idle_seconds()
    setting = f"exit after {idle:g} s idle" if idle > 0 else "off"
    click.echo(
        f"  sandbox servers: {len(answering_servers())} running "
        f"({setting}, DATAFLARE_SANDBOX_SERVER_IDLE_S)"
    )


@cache.command("clear")
def cache_clear_command() -> None:
    """Delete every built and compiled component (the next use builds and compiles again),
    and stop the sandbox servers (the next WASM plugin starts one again)."""
    from dataflare_host import _cache
    from dataflare_host.wasm._sandbox_spawn import stop_servers

    cleared = _cache.clear_cache()
    click.echo(
        f"cleared {_cache.cache_root()}: {cleared.files} file(s), {cleared.bytes / _MB:.1f} MB"
    )
    stopped = stop_servers()
    if stopped:
        click.echo(f"stopped {stopped} sandbox server(s)")
