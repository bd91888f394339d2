"""Record batches as msgpack bytes: for checkpoints, files and any byte transport.

Each record is an array ``[value, key, timestamp, metadata, offset]`` and a batch
is ``[FORMAT_VERSION, [record, ...]]``, so a reader can refuse bytes from a
future format instead of misreading them.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgpack

from dataflare import Record, SerializationError

__all__ = ["FORMAT_VERSION", "decode_batch", "encode_batch"]

FORMAT_VERSION = 1
"""Version of the msgpack batch layout; :func:`decode_batch` refuses any other."""


def encode_batch(records: Iterable[Record]) -> bytes:
    """Serialize records to msgpack bytes that :func:`decode_batch` reads back.

    >>> decode_batch(encode_batch([Record(b"v", key=b"k")])) == [Record(b"v", key=b"k")]
    True
    """
    body = [[r.value, r.key, r.timestamp, dict(r.metadata), r.offset] for r in records]
    try:
        return msgpack.packb([FORMAT_VERSION, body], use_bin_type=True)  # type: ignore[no-any-return]
    except (OverflowError, ValueError) as exc:
        raise SerializationError(
            f"records cannot be encoded: {exc} (offsets and timestamps must fit in 64 bits)"
        ) from exc


def decode_batch(data: bytes) -> list[Record]:
    """Read records back from :func:`encode_batch` bytes.

    Raises :class:`SerializationError` saying what is wrong when ``data`` is
    not a batch of this format.
    """
    try:
        decoded = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for bad bytes
        raise SerializationError(
            f"bytes are not a msgpack record batch ({type(exc).__name__}: {exc})"
        ) from exc
    if not (isinstance(decoded, list) and len(decoded) == 2 and isinstance(decoded[1], list)):
        raise SerializationError("bytes are msgpack but not a record batch [version, records]")
    version, body = decoded
    if type(version) is not int or version != FORMAT_VERSION:
        raise SerializationError(
            f"record batch format {version!r} is not supported (this SDK reads "
            f"format {FORMAT_VERSION}); upgrade the reader"
        )
    records: list[Record] = []
    for position, item in enumerate(body):
        try:
            value, key, timestamp, metadata, offset = item
            records.append(Record(value, key, timestamp, metadata, offset))
        except (TypeError, ValueError) as exc:
            raise SerializationError(f"record {position} of the batch is malformed: {exc}") from exc
    return records
