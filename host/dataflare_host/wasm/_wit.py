"""Where the WIT contract lives: inside the installed package, or the checkout."""

from __future__ import annotations

from pathlib import Path

__all__ = ["WIT_INTERFACE", "WIT_WORLD", "wit_dir"]

WIT_WORLD = "processor"
WIT_INTERFACE = "dataflare:plugin/plugin@0.1.0"


def wit_dir() -> Path:
    """The directory holding ``plugin.wit``."""
    here = Path(__file__).resolve().parent
    installed, checkout = here / "_wit", here.parents[2] / "wit"
    for candidate in (installed, checkout):
        if (candidate / "plugin.wit").is_file():
            return candidate
    raise FileNotFoundError(
        f"the WIT contract (plugin.wit) is neither in {installed} nor in {checkout}; "
        "reinstall dataflare-plugins"
    )
