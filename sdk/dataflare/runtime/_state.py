"""A plugin's own state: a bounded bytes -> bytes mapping the host checkpoints.

A plugin declares it with ``@dataflare.filter(state=dataflare.KeyedState(...))``
(filter, map, filter_map, array_map) and receives it as the argument after the
record. The Dispatcher owns the live mapping; :func:`snapshot_state` and
:func:`restore_state` turn it into bytes and back, the same bytes in both
runtimes: a ``record-batch`` (``wit/plugin.wit``) with one record per entry.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, MutableMapping

import attrs

from dataflare._errors import SerializationError

from ._wire import decode_batch, encode_batch

__all__ = ["EMPTY_SNAPSHOT", "KeyedState", "StateBounds", "restore_state", "snapshot_state"]

_MAX_BOUND = (1 << 32) - 1  # the contract's state-decl fields are u32

EMPTY_SNAPSHOT = encode_batch([], []).encode("latin-1")
"""The snapshot of an empty state (and of a plugin that declares none)."""


@attrs.frozen
class StateBounds:
    """What a plugin declares about its state: the hard bounds (``state-decl`` in the WIT)."""

    max_entries: int
    max_bytes: int

    def check_snapshot(self, snapshot: bytes, what: str) -> None:
        """Refuse a snapshot (from an untrusted guest) that breaks the framing or these bounds.

        >>> StateBounds(1, 10).check_snapshot(EMPTY_SNAPSHOT, "a guest's state")
        """
        keys, values = decode_entries(snapshot, what)
        stored = sum(map(len, keys)) + sum(map(len, values))
        if len(keys) > self.max_entries or stored > self.max_bytes:
            raise SerializationError(
                f"{what} holds {len(keys):,} entries of {stored:,} bytes, more than the "
                f"{self.max_entries:,} entries and {self.max_bytes:,} bytes it declared"
            )

    def wire_limit(self) -> int:
        """The longest snapshot text within these bounds (header, 16 bytes per entry, data)."""
        return len(EMPTY_SNAPSHOT) + 16 * self.max_entries + self.max_bytes


class KeyedState(MutableMapping[bytes, bytes]):
    """A plugin's state: a bytes -> bytes mapping with a hard size bound.

    It holds at most ``max_entries`` entries and ``max_bytes`` bytes (keys plus
    values). A write that goes past either bound first evicts the *least recently
    written* entries (a write moves its key to the newest end; reads do not), so
    a dedupe filter remembers the last ``max_entries`` keys it saw. One entry
    larger than ``max_bytes`` on its own is a ``ValueError``. Iteration goes from
    the least to the most recently written entry. Keys and values are bytes;
    anything else is a ``TypeError``, also for ``in`` and ``get``.

    Given to a decorator it is a declaration (start empty, these bounds); each
    running plugin gets its own. In a test, pass one directly:

    >>> state = KeyedState(max_entries=2)
    >>> state[b"a"] = b"1"; state[b"b"] = b"2"; state[b"c"] = b"3"
    >>> list(state), b"a" in state, state.nbytes
    ([b'b', b'c'], False, 4)
    """

    __slots__ = ("_entries", "_size", "max_bytes", "max_entries")

    def __init__(self, max_entries: int = 100_000, max_bytes: int = 16 << 20) -> None:
        for name, bound in (("max_entries", max_entries), ("max_bytes", max_bytes)):
            if type(bound) is not int or not 1 <= bound <= _MAX_BOUND:
                raise TypeError(
                    f"KeyedState({name}=...) must be a whole number from 1 to {_MAX_BOUND:,}, "
                    f"not {bound!r}"
                )
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[bytes, bytes] = OrderedDict()
        self._size = 0

    @property
    def bounds(self) -> StateBounds:
        """The bounds, as a plugin declares them."""
        return StateBounds(self.max_entries, self.max_bytes)

    @property
    def nbytes(self) -> int:
        """Bytes held: the sum of every key's and value's length."""
        return self._size

    def __getitem__(self, key: bytes) -> bytes:
        return self._entries[key]

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        """The value of ``key``, or ``default``."""
        if type(key) is not bytes:
            raise _not_bytes("key", key)
        return self._entries.get(key, default)

    def __contains__(self, key: object) -> bool:
        if type(key) is not bytes:
            raise _not_bytes("key", key)
        return key in self._entries

    def __setitem__(self, key: bytes, value: bytes) -> None:
        if type(key) is not bytes:
            raise _not_bytes("key", key)
        if type(value) is not bytes:
            raise _not_bytes("value", value)
        size = len(key) + len(value)
        if size > self.max_bytes:
            raise ValueError(
                f"a state entry of {size:,} bytes (key and value) is larger than the whole "
                f"state may be (max_bytes={self.max_bytes:,})"
            )
        entries = self._entries
        old = entries.pop(key, None)
        if old is not None:
            self._size -= len(key) + len(old)
        entries[key] = value
        self._size += size
        # Evicting from the oldest end: least recently written goes first.
        while len(entries) > self.max_entries or self._size > self.max_bytes:
            gone, gone_value = entries.popitem(last=False)
            self._size -= len(gone) + len(gone_value)

    def __delitem__(self, key: bytes) -> None:
        value = self._entries.pop(key)
        self._size -= len(key) + len(value)

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()
        self._size = 0

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return (
            f"KeyedState({len(self):,} entries, {self._size:,} bytes; max_entries="
            f"{self.max_entries:,}, max_bytes={self.max_bytes:,})"
        )


def _not_bytes(what: str, got: object) -> TypeError:
    return TypeError(
        f"state {what}s are bytes, not {type(got).__name__} ({got!r:.40}); "
        "e.g. record.key, or text.encode()"
    )


def snapshot_state(state: KeyedState) -> bytes:
    """The state as a ``record-batch``: entry ``i`` (least recently written first) is record
    ``i``, with position ``i``, the entry's key as key and its value as value.

    >>> state = KeyedState(); state[b"k"] = b"v"
    >>> snapshot = snapshot_state(state)
    >>> copy = KeyedState(); restore_state(copy, snapshot, "doc"); dict(copy)
    {b'k': b'v'}
    """
    keys = list(state)
    values = [state[key] for key in keys]
    return encode_batch(range(len(keys)), values, keys).encode("latin-1")


def decode_entries(snapshot: bytes, what: str) -> tuple[list[bytes], list[bytes]]:
    """A snapshot's keys and values, oldest first; SerializationError naming ``what``.

    Beyond the ``record-batch`` rules: positions are 0, 1, 2...; every entry has a
    key and keys are distinct; no timestamps or metadata.
    """
    try:
        text = snapshot.decode("latin-1")
    except AttributeError:
        raise SerializationError(f"{what} is {type(snapshot).__name__}, not bytes") from None
    batch = decode_batch(text, what)
    count = len(batch.values)
    if batch.positions != list(range(count)):
        raise SerializationError(f"{what}: entry positions are not 0, 1, 2, ...")
    if batch.timestamps is not None or batch.metadata is not None or batch.lines is not None:
        raise SerializationError(f"{what}: state entries have no timestamps or metadata")
    keys = batch.keys if batch.keys is not None else [None] * count
    present = [key for key in keys if key is not None]
    if len(present) != count:
        raise SerializationError(f"{what}: an entry has no key")
    if len(set(present)) != count:
        raise SerializationError(f"{what}: a key appears twice")
    return present, batch.values


def restore_state(state: KeyedState, snapshot: bytes, what: str) -> None:
    """Replace ``state``'s entries by the snapshot's, written oldest first.

    Written one by one, so a snapshot larger than ``state``'s bounds (a plugin
    whose bound was lowered since) keeps its most recently written entries, by
    the same rule as any write. Raises SerializationError naming ``what``.
    """
    keys, values = decode_entries(snapshot, what)
    state.clear()
    try:
        for key, value in zip(keys, values, strict=True):
            state[key] = value
    except ValueError as exc:
        state.clear()
        raise SerializationError(f"{what}: {exc}") from exc
