"""The plugin author's test kit: strategies, a host-exact runner, a parity check.

>>> from dataflare_host.testing import batches, run_plugin
>>> # @given(batch=batches()) ... run_plugin("my_plugin.py", batch).outputs
>>> # run_pipeline("pipeline.yaml", {"events": records}).values("out")

Also a pytest plugin (installed with the package): the fixtures
``dataflare_run_plugin``, ``dataflare_plugin_path`` and ``dataflare_assert_parity``
need no set-up code in an author's tests. It imports nothing until one of them
is used. The kit needs Hypothesis and the host, so it is not part of the SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataflare_host._lazy import lazy_attributes as _lazy_attributes

if TYPE_CHECKING:
    from ._harness import PipelineResult, run_pipeline
    from ._running import ParityError, assert_parity, describe_difference, run_plugin
    from ._strategies import (
        batches,
        byte_values,
        json_documents,
        json_scalars,
        json_values,
        keys,
        metadata,
        offsets,
        records,
        text_values,
        timestamps,
    )

__all__ = [
    "ParityError",
    "PipelineResult",
    "assert_parity",
    "batches",
    "byte_values",
    "describe_difference",
    "json_documents",
    "json_scalars",
    "json_values",
    "keys",
    "metadata",
    "offsets",
    "records",
    "run_pipeline",
    "run_plugin",
    "text_values",
    "timestamps",
]

__getattr__ = _lazy_attributes(
    __name__,
    {
        **dict.fromkeys(["PipelineResult", "run_pipeline"], "_harness"),
        **dict.fromkeys(["ParityError", "assert_parity", "describe_difference", "run_plugin"],
                        "_running"),
        **dict.fromkeys(
            ["batches", "byte_values", "json_documents", "json_scalars", "json_values", "keys",
             "metadata", "offsets", "records", "text_values", "timestamps"],
            "_strategies",
        ),
    },
)
