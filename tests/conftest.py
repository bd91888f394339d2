"""Shared test configuration: Hypothesis profiles and paths to the project's files.

Profiles: ``dev`` (the default) runs 50 examples per property; ``ci`` (chosen when
the ``CI`` environment variable is set, or with ``HYPOTHESIS_PROFILE=ci``) runs
more, derandomized so a red build replays, with no deadline because shared CI
machines stall. ``HYPOTHESIS_PROFILE`` overrides both.
"""

from __future__ import annotations

import os
import sys
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
