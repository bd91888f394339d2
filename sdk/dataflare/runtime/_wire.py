"""The batch encodings that cross the WASM boundary (see ``wit/plugin.wit``).

Host -> guest is CPython ``marshal`` (version 4) carried as Latin-1 text: the
guest decodes it with C-speed ``marshal.loads``, where msgpack's pure-Python
fallback measured 10x slower. The guest never sends marshal back: marshal is
not safe against malicious bytes, so guest -> host is JSON, which the host
parses safely and then checks field by field.
"""

from __future__ import annotations

import json
import marshal
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from dataflare._errors import SerializationError
from dataflare._record import Record

from ._trusted_records import build_trusted_records

__all__ = [
    "WIRE_VERSION",
    "decode_accumulator",
    "decode_kept",
    "decode_records",
    "decode_request",
    "encode_accumulator",
    "encode_kept",
    "encode_records",
    "encode_request",
]

WIRE_VERSION = 1
"""Version of the host -> guest batch encoding; the guest refuses any other."""
_MARSHAL_VERSION = 4  # readable by every CPython from 3.4 to the guest's 3.14


# -- host -> guest -----------------------------------------------------------


def encode_request(records: Sequence[Record]) -> str:
    """Host side: a batch as ``encoded-batch`` text."""
    values = [r.value for r in records]
    keys: list[bytes | None] | None = [r.key for r in records]
    if not any(k is not None for k in keys):  # type: ignore[union-attr]
        keys = None
    timestamps: list[int | None] | None = [r.timestamp for r in records]
    if not any(t is not None for t in timestamps):  # type: ignore[union-attr]
        timestamps = None
    metadata = (
        [_plain_dict(r.metadata) for r in records] if any(r.metadata for r in records) else None
    )
    offsets = [r.offset for r in records]
    payload = (WIRE_VERSION, values, keys, timestamps, metadata, offsets)
    return marshal.dumps(payload, _MARSHAL_VERSION).decode("latin-1")


def _plain_dict(metadata: Mapping[str, str]) -> dict[str, str]:
    # A record's metadata is a read-only view of a private dict: copying that
    # dict is 5x faster than dict(view), which goes key by key.
    if type(metadata) is MappingProxyType:
        copied = metadata.copy()
        if type(copied) is dict:
            return copied
    return dict(metadata)


def decode_request(text: str) -> list[Record]:
    """Guest side: records from ``encoded-batch`` text (written by the trusted host)."""
    try:
        version, values, keys, timestamps, metadata, offsets = marshal.loads(text.encode("latin-1"))
    except (ValueError, EOFError, TypeError, UnicodeEncodeError) as exc:
        raise SerializationError(f"the batch is not an encoded-batch: {exc}") from exc
    if version != WIRE_VERSION:
        raise SerializationError(
            f"encoded-batch version {version} is not supported (this SDK reads "
            f"{WIRE_VERSION}); rebuild the component with the host's SDK"
        )
    return build_trusted_records(values, keys, timestamps, metadata, offsets)


def encode_accumulator(accumulator: bytes | None) -> str | None:
    """Bytes (an aggregate's state) as Latin-1 text, or None."""
    return None if accumulator is None else accumulator.decode("latin-1")


def decode_accumulator(text: str) -> bytes:
    """Latin-1 text back to bytes; raises SerializationError on a wider character."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise SerializationError(f"accumulator text is not Latin-1 bytes: {exc}") from exc


# -- guest -> host -----------------------------------------------------------


def encode_kept(kept: list[int]) -> str:
    """Guest side: a filter's kept indices as JSON."""
    return json.dumps(kept, separators=(",", ":"))


def encode_records(outputs: Sequence[Record], sources: Sequence[int]) -> str:
    """Guest side: output records and the input index each came from, as JSON."""
    values = [r.value.decode("latin-1") for r in outputs]
    keys: list[str | None] | None = None
    if any(r.key is not None for r in outputs):
        keys = [None if r.key is None else r.key.decode("latin-1") for r in outputs]
    timestamps: list[int | None] | None = None
    if any(r.timestamp is not None for r in outputs):
        timestamps = [r.timestamp for r in outputs]
    metadata = (
        [_plain_dict(r.metadata) for r in outputs] if any(r.metadata for r in outputs) else None
    )
    body = {"src": list(sources), "v": values, "k": keys, "t": timestamps, "m": metadata}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def _load_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise SerializationError(f"the guest's {what} is not valid JSON: {exc}") from exc


def decode_kept(text: str, consumed: int) -> list[int]:
    """Host side: a filter's kept indices, checked to be increasing and below ``consumed``."""
    kept = _load_json(text, "kept indices")
    if not isinstance(kept, list):
        raise SerializationError("the guest's kept indices are not a JSON array")
    previous = -1
    for index in kept:
        if type(index) is not int or not previous < index < consumed:
            raise SerializationError(
                f"the guest's kept indices are not increasing indices below {consumed}: "
                f"found {index!r} after {previous}"
            )
        previous = index
    return kept


def decode_records(
    text: str, inputs: Sequence[Record], consumed: int
) -> tuple[list[Record], list[int]]:
    """Host side: output records and their sources from untrusted guest JSON.

    Every field is checked; each output takes the offset of the input it came from.
    """
    body = _load_json(text, "records")
    try:
        sources = body["src"]
        values = body["v"]
        count = len(values)
        keys = body["k"] if body["k"] is not None else [None] * count
        timestamps = body["t"] if body["t"] is not None else [None] * count
        metadata = body["m"] if body["m"] is not None else [None] * count
        columns = (sources, values, keys, timestamps, metadata)
        if not all(type(column) is list for column in columns):
            raise ValueError("columns must be JSON arrays")
        if not (len(sources) == len(keys) == len(timestamps) == len(metadata) == count):
            raise ValueError("columns differ in length")
        outputs: list[Record] = []
        previous = 0
        for source, value, key, timestamp, meta in zip(
            sources, values, keys, timestamps, metadata, strict=True
        ):
            if type(source) is not int or not previous <= source < consumed:
                raise ValueError(f"output source index {source!r} is out of order or range")
            previous = source
            outputs.append(
                Record(
                    value.encode("latin-1"),
                    None if key is None else key.encode("latin-1"),
                    timestamp,
                    meta,
                    inputs[source].offset,
                )
            )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SerializationError(f"the guest's records are malformed: {exc}") from exc
    return outputs, list(sources)
