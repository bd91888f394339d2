"""``dataflare cache info`` and ``dataflare cache clear``: the cache of built and compiled
WASM components, and the sandbox servers."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from dataflare import ConfigurationError
from dataflare_host.cli._failure import fail

if TYPE_CHECKING:
    from dataflare_host._cache import CacheEntry

__all__ = ["cache"]

_MB = 1 << 20  # the unit of DATAFLARE_CACHE_MAX_MB


@click.group()
def cache() -> None:
    """Show or clear the cache of built and compiled WASM components."""


@cache.command("info")
@click.option(
    "--list",
    "listing",
    is_flag=True,
    help="Also list every cached file with its size and when it was last used.",
)
def cache_info_command(listing: bool) -> None:
    """Where the cache is, what each folder holds, and the size cap.

    builds/ holds components by their build's inputs (named after the plugin),
    compiled/ their compiled artifacts, keys/ which artifact a component file maps
    to; when compiled/ passes its cap (DATAFLARE_CACHE_MAX_MB) the least recently
    used artifacts are deleted. --list shows each file, most recently used first.
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
    if listing:
        _list_entries(_cache.cache_entries())
    from dataflare_host.wasm.sandbox.host._spawn import answering_servers, idle_seconds

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
    from dataflare_host.wasm.sandbox.host._spawn import stop_servers

    cleared = _cache.clear_cache()
    click.echo(
        f"cleared {_cache.cache_root()}: {cleared.files} file(s), {cleared.bytes / _MB:.1f} MB"
    )
    stopped = stop_servers()
    if stopped:
        click.echo(f"stopped {stopped} sandbox server(s)")


def _list_entries(entries: Sequence[CacheEntry]) -> None:
    """One line per cached file: ``builds/name.wasm  20.8 MB  used 2026-12-07 04:57 UTC``."""
    click.echo("  files (most recently used first in each folder):")
    if not entries:
        click.echo("    (none)")
    width = max((len(f"{e.folder}/{e.name}") for e in entries), default=0)
    for entry in entries:
        used = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(entry.used))
        name = f"{entry.folder}/{entry.name}"
        click.echo(f"    {name:<{width}}  {entry.bytes / _MB:>8.1f} MB  used {used}")
