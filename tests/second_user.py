"""Another user on this machine, for tests where another user's files are the point.

Created with ``useradd`` when the suite runs as root (it then owns the files
the test plants); elsewhere the tests that need it skip, saying why.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess

import pytest

NAME = "dataflare-other"


def other_uid() -> int:
    """The uid of a second user; skips the test when one cannot be made."""
    try:
        return pwd.getpwnam(NAME).pw_uid
    except KeyError:
        pass
    if os.geteuid() != 0:
        pytest.skip("needs a second user: creating one takes root, and this run is not root")
    useradd = shutil.which("useradd")
    if useradd is None:
        pytest.skip("needs a second user: useradd is not installed")
    done = subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", NAME],
        capture_output=True,
        text=True,
        check=False,
    )
    # 9: another test process created it meanwhile.
    if done.returncode not in (0, 9):
        pytest.skip(f"needs a second user: useradd failed: {done.stderr.strip()}")
    return pwd.getpwnam(NAME).pw_uid
