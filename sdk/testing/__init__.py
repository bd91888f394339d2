"""The plugin author's testing kit: strategies, a host-exact runner, a parity check.

>>> from sdk.testing import batches, run_plugin
>>> # @given(batch=batches()) ... run_plugin("my_plugin.py", batch).outputs

Installed as a pytest plugin too: the fixtures ``run_plugin`` and
``assert_parity`` need no set-up code in an author's tests. Imports Hypothesis
(and the host, for WASM), so it is not part of the guest SDK.
"""

from ._running import ParityError, assert_parity, describe_difference, run_plugin
from ._strategies import (
    batches,
    byte_values,
    json_values,
    keys,
    metadata,
    records,
    text_values,
    timestamps,
)

__all__ = [
    "ParityError",
    "assert_parity",
    "batches",
    "byte_values",
    "describe_difference",
    "json_values",
    "keys",
    "metadata",
    "records",
    "run_plugin",
    "text_values",
    "timestamps",
]
