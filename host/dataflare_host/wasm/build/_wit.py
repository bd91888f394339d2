"""Where the WIT contract lives: inside the installed package, or the checkout."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from dataflare.runtime import CONTRACT_VERSION

__all__ = ["WIT_INTERFACE", "WIT_INTERFACE_PREFIX", "WIT_WORLD", "contract_version_of", "wit_dir"]

WIT_WORLD = "processor"
WIT_INTERFACE_PREFIX = "dataflare:plugin/plugin@"
WIT_INTERFACE = WIT_INTERFACE_PREFIX + CONTRACT_VERSION


def contract_version_of(export_names: Iterable[str]) -> str | None:
    """The plugin contract version a component's exports speak, or None if none.

    >>> contract_version_of(["exports", "dataflare:plugin/plugin@0.1.0"])
    '0.1.0'
    """
    for name in export_names:
        if name.startswith(WIT_INTERFACE_PREFIX):
            return name[len(WIT_INTERFACE_PREFIX) :]
    return None


def wit_dir() -> Path:
    """The directory holding ``plugin.wit``."""
    here = Path(__file__).resolve().parent
    installed, checkout = here / "_wit", here.parents[3] / "wit"
    for candidate in (installed, checkout):
        if (candidate / "plugin.wit").is_file():
            return candidate
    raise FileNotFoundError(
        f"the WIT contract (plugin.wit) is neither in {installed} nor in {checkout}; "
        "reinstall dataflare-plugins"
    )
