"""Waiting for a server on a Unix socket (the sandbox fork server) to take connections."""

from __future__ import annotations

import socket
import time


def wait_until_answering(path: str, timeout_s: float = 30.0) -> None:
    """Return once a SOCK_SEQPACKET connection to ``path`` succeeds; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as probe:
            try:
                probe.connect(path)
                return
            except OSError:
                time.sleep(0.02)
    raise AssertionError(f"no server answered on {path} within {timeout_s} s")
