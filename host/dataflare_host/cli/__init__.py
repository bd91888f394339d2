"""The ``dataflare`` command line: ``new``, ``test``, ``build``, ``validate``, ``run``.

Run it as ``dataflare ...`` or ``python -m dataflare ...``.
"""

from dataflare_host.cli._main import main

__all__ = ["main"]
