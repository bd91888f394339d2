"""``python -m dataflare``: the ``dataflare`` command line.

The SDK never depends on the host: this launcher finds the CLI by name at run
time, so the guest bundle and ``import dataflare`` stay host-free.
"""

from __future__ import annotations

import importlib
import sys


def main() -> None:
    """Run the host's CLI, or say how to install it."""
    try:
        cli = importlib.import_module("dataflare_host.cli")
    except ModuleNotFoundError:
        sys.exit(
            "error: the dataflare command needs the host: install the dataflare-plugins "
            "distribution from a clone (pip install '/path/to/dataflare-plugins[test]')"
        )
    cli.main(prog_name="dataflare")


if __name__ == "__main__":
    main()
