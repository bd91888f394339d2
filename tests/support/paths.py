"""Where the tests find the project: its root, the example plugins, the persistent test cache."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "guest_examples"

# Tests never write the user's cache: builds and compiled artifacts go to a
# persistent folder under the project (reused across runs, keyed by content).
TEST_CACHE = Path(os.environ.get("DATAFLARE_TEST_CACHE_DIR") or REPO / ".dataflare" / "test-cache")
