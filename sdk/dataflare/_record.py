"""The record every plugin receives and returns."""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import attrs

__all__ = ["Record"]

_EMPTY_METADATA: Mapping[str, str] = MappingProxyType({})
_MIN_I64, _MAX_I64 = -(1 << 63), (1 << 63) - 1


def _freeze_metadata(metadata: Mapping[str, str] | None) -> Mapping[str, str]:
    # A read-only copy keeps records values: neither a plugin nor the caller that
    # built the record can change its metadata afterwards.
    if metadata is None or metadata is _EMPTY_METADATA:
        return _EMPTY_METADATA
    if not isinstance(metadata, Mapping):
        raise _type_error("metadata", "a mapping of str to str", metadata)
    if not metadata:
        return _EMPTY_METADATA
    frozen = dict(metadata)
    for name, item in frozen.items():
        if type(name) is not str or type(item) is not str:
            part, bad = ("key", name) if type(name) is not str else ("value", item)
            raise TypeError(
                f"Record 'metadata' must map str to str (got {part} {bad!r} "
                f"that is a {type(bad).__name__})."
            )
        if not (name.isascii() and item.isascii()) and not (name + item).isprintable():
            # A lone surrogate (json.loads lets one through) cannot travel as UTF-8.
            (name + item).encode()
    return MappingProxyType(frozen)


def _type_error(name: str, expected: str, got: object) -> TypeError:
    got_text = f"{got!r} that is a {type(got).__name__}"
    return TypeError(f"Record {name!r} must be {expected} (got {got_text}).")


class _ParsedValue:
    # Slots outside the fields (not compared, hashed, shown or pickled): a JSONL source's
    # parse, for the first json(); a file source's line number, its metadata until read
    # (the metadata slot then holds the file's name: see _copy_metadata).
    __slots__ = ("_line", "_parsed")


@attrs.frozen
class Record(_ParsedValue):
    """One record: an immutable value with an optional key, timestamp and metadata.

    ``value`` and ``key`` are bytes, ``timestamp`` is milliseconds since the epoch,
    ``metadata`` maps str to str, and ``offset`` is the record's position in its
    stream (set by the host; errors name it).

    >>> r = Record(b'{"n": 2}', key=b"k1")
    >>> r.json()["n"]
    2
    >>> r.evolve(value=b"other").value
    b'other'
    >>> Record.from_text("héllo").text
    'héllo'
    """

    value: bytes = b""
    key: bytes | None = None
    timestamp: int | None = None
    metadata: Mapping[str, str] = attrs.field(
        default=_EMPTY_METADATA,
        converter=_freeze_metadata,
        repr=lambda metadata: repr(dict(metadata)),
        hash=False,
    )
    offset: int = 0

    def __attrs_post_init__(self) -> None:
        # Plain type checks instead of attrs validators: records are built on the
        # hot path (10k per batch, inside the WASM guest too) and they cost less.
        if type(self.value) is not bytes:
            raise _type_error("value", "bytes", self.value)
        if self.key is not None and type(self.key) is not bytes:
            raise _type_error("key", "bytes or None", self.key)
        if self.timestamp is not None and (
            type(self.timestamp) is not int or not _MIN_I64 <= self.timestamp <= _MAX_I64
        ):
            # Every sink and checkpoint stores a 64-bit integer: refuse more here.
            raise _type_error("timestamp", "a 64-bit int (ms) or None", self.timestamp)
        if type(self.offset) is not int or not _MIN_I64 <= self.offset <= _MAX_I64:
            raise _type_error("offset", "a 64-bit int", self.offset)

    @classmethod
    def from_text(
        cls,
        text: str,
        *,
        key: str | bytes | None = None,
        timestamp: int | None = None,
        metadata: Mapping[str, str] | None = None,
        offset: int = 0,
    ) -> Record:
        """Build a record whose value (and key, if a str) is ``text`` encoded as UTF-8."""
        encoded_key = key.encode() if isinstance(key, str) else key
        return cls(text.encode(), encoded_key, timestamp, metadata, offset)

    @classmethod
    def from_json(
        cls,
        obj: Any,
        *,
        key: str | bytes | None = None,
        timestamp: int | None = None,
        metadata: Mapping[str, str] | None = None,
        offset: int = 0,
    ) -> Record:
        """Build a record whose value is ``obj`` serialized as compact JSON."""
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
        return cls.from_text(text, key=key, timestamp=timestamp, metadata=metadata, offset=offset)

    @property
    def text(self) -> str:
        """The value decoded as UTF-8 (raises ``UnicodeDecodeError`` if it is not)."""
        return self.value.decode()

    @property
    def key_text(self) -> str | None:
        """The key decoded as UTF-8, or None when the record has no key."""
        return None if self.key is None else self.key.decode()

    def json(self) -> Any:
        """The value parsed as JSON: what ``json.loads(record.value)`` returns or raises.

        The way to read a JSON record, natively and in WASM. Each call returns a
        value of its own; the first may hand over the parse a JSONL source made to
        check the line (so it is not parsed twice), later calls parse again.

        >>> (r := Record(b'{"a": [1]}')).json() == r.json() and r.json() is not r.json()
        True
        """
        try:  # handed over once, as the caller may change it (to one thread, if two ask)
            parsed = self._parsed  # type: ignore[attr-defined]
            _forget_parsed(self)
        except AttributeError:
            parsed = _NOT_KEPT
        if parsed is not _NOT_KEPT:
            if type(parsed) is tuple:  # (a parsed column, index): in the guest, or once sent
                parsed = parsed[0].item(parsed[1])
            if parsed is not ...:  # json.loads makes neither: ... marks a value never parsed
                return parsed
        # Outside any handler: a failure carries no context of ours (in WASM: a fast path).
        return json.loads(self.value)

    def evolve(self, **changes: Any) -> Record:
        """A copy with the given fields replaced; ``str`` values are UTF-8 encoded.

        >>> Record(b"a", offset=3).evolve(value="b")
        Record(value=b'b', key=None, timestamp=None, metadata={}, offset=3)
        """
        value = changes.get("value")
        if type(value) is bytes and len(changes) == 1:
            # The hot path of every map: a new value, every other field as it was
            # (checked when this record was made, so not again).
            record: Record = _new_record(Record)
            _set_value(record, value)
            _set_key(record, self.key)
            _set_timestamp(record, self.timestamp)
            _copy_metadata(self, record)
            _set_offset(record, self.offset)
            return record
        for name in ("value", "key"):
            if isinstance(changes.get(name), str):
                changes[name] = changes[name].encode()
        if changes.keys() <= _UNFROZEN_FIELDS:
            # Metadata stays the same read-only mapping (already frozen, nobody
            # can change it), so copying and re-checking it as attrs.evolve
            # would is wasted; the fields that may change get __init__'s checks.
            record = _new_record(Record)
            _set_value(record, value := changes.get("value", self.value))
            _set_key(record, changes.get("key", self.key))
            _set_timestamp(record, changes.get("timestamp", self.timestamp))
            _copy_metadata(self, record)
            _set_offset(record, changes.get("offset", self.offset))
            if len(changes) == 1 and "value" in changes:
                # Only the value is new: the other fields passed the checks already.
                if type(value) is not bytes:
                    raise _type_error("value", "bytes", value)
            else:
                record.__attrs_post_init__()
            return record
        return attrs.evolve(self, **changes)


_UNFROZEN_FIELDS = frozenset(("value", "key", "timestamp", "offset"))
_new_record = Record.__new__
# Slot descriptors: they set a frozen instance's fields without __setattr__.
_set_value, _set_key, _set_timestamp, _set_offset = (
    Record.__dict__[name].__set__ for name in ("value", "key", "timestamp", "offset")
)
_set_metadata, _get_metadata = Record.metadata.__set__, Record.metadata.__get__  # type: ignore[attr-defined]
_set_line, _get_line = _ParsedValue._line.__set__, _ParsedValue._line.__get__  # type: ignore[attr-defined]
_set_parsed, _forget_parsed = _ParsedValue._parsed.__set__, _ParsedValue._parsed.__delete__  # type: ignore[attr-defined]
_NOT_KEPT = object()


def _copy_metadata(source: Record, target: Record) -> None:
    # A copy keeps a line's metadata unmade (a map's output rarely reads it either).
    # Unmade, the slot holds the line's file name (never a mapping, so never
    # metadata), which spares a record builder one slot per record.
    metadata = _get_metadata(source)
    _set_metadata(target, metadata)
    if type(metadata) is str:
        _set_line(target, _get_line(source))
