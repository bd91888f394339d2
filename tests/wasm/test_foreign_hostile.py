"""Hostile components not built from the SDK: hand-written WAT against the contract.

The components here implement the whole ``plugin`` interface of ``wit/plugin.wit``
in the component-model text format, with no Python and no bindings generator
inside: ``describe`` returns a real plugin-info, ``init`` accepts, the kind's
export answers ordinary batches correctly (a filter keeps every record, a map
returns its input), and on a batch holding the bytes ``attack`` the export
misbehaves in one hand-written way: it loops forever, blocks in WASI, or
returns forged outputs that break one rule of the framing each. The host must
answer each with one clear error naming the component, never crash or hang,
and stay usable: the same plugin object runs the next batch.

How the components are made (so they follow the contract when it changes):
the type definitions and the functions of the exported interfaces are read
from ``wit/plugin.wit``; names carry ``dataflare.runtime.CONTRACT_VERSION``;
sizes, alignments and flattening follow the canonical ABI; every value a
function returns is laid out in linear memory by :class:`Image` and lifted by
``canon lift``. An export this file has no behaviour for (a later contract's
new function) returns the all-zero value of its result type, which is a valid
value of every type (``ok``, empty strings and lists, ``none``, the first case).
Strings use the ``latin1+utf16`` encoding, so a batch arrives as the framing's
bytes themselves and a forged framing is written byte for byte.
"""

from __future__ import annotations

import functools
import re
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml
from support.output import without_progress
from support.wat import WASI_SLEEP_CORE_IMPORTS, WASI_SLEEP_IMPORTS, WASI_SLEEP_WITH

from dataflare import (
    ConfigurationError,
    LimitExceededError,
    ProcessingError,
    Record,
    SerializationError,
)
from dataflare.runtime import CONTRACT_VERSION
from dataflare_host import Plugin, Sandbox, load_plugin
from dataflare_host.wasm.build._wit import wit_dir
from dataflare_host.wasm.sandbox.host._instance import KILL_GRACE_S

pytestmark = pytest.mark.wasm

# --- the contract's types and functions, read from wit/plugin.wit --------------------------

# A type: a primitive's name ("string", "u32", ...), or a tuple:
# ("list", T) ("option", T) ("result", T | None, T | None) ("tuple", (T, ...)) ("named", name).
WitType = Any
# A named type's definition: ("record", ((field, T), ...)) ("enum", (case, ...))
# ("variant", ((case, T | None), ...)) ("alias", T).
Definition = tuple[str, Any]

_PRIMITIVES = {
    "bool": (1, "i32"),
    "u8": (1, "i32"),
    "s8": (1, "i32"),
    "u16": (2, "i32"),
    "s16": (2, "i32"),
    "u32": (4, "i32"),
    "s32": (4, "i32"),
    "char": (4, "i32"),
    "u64": (8, "i64"),
    "s64": (8, "i64"),
    "f32": (4, "f32"),
    "f64": (8, "f64"),
}
_TOKEN = re.compile(r"->|[{}()<>,:;.=@/*]|%?[A-Za-z_][A-Za-z0-9_-]*|\d+(?:\.\d+)*")


@attrs.frozen
class Function:
    name: str
    params: tuple[tuple[str, WitType], ...]
    result: WitType | None


@attrs.frozen
class Interface:
    name: str
    uses: tuple[tuple[str, tuple[str, ...]], ...]  # (interface, names)
    types: tuple[str, ...]  # the names it defines, in order
    functions: tuple[Function, ...]


@attrs.frozen
class Contract:
    """What ``wit/plugin.wit`` declares, enough to implement its world by hand."""

    package: str  # "dataflare:plugin"
    definitions: Mapping[str, Definition]
    interfaces: Mapping[str, Interface]
    exports: tuple[str, ...]  # the world's exported interfaces

    def resolve(self, t: WitType) -> WitType:
        """``t`` with named aliases followed (records, enums and variants stay named)."""
        while isinstance(t, tuple) and t[0] == "named":
            definition = self.definitions[t[1]]
            if definition[0] != "alias":
                return t
            t = definition[1]
        return t


class _Tokens:
    def __init__(self, text: str) -> None:
        text = re.sub(r"//[^\n]*", "", text)  # comments and doc comments
        text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
        self.items: list[str] = _TOKEN.findall(text)
        self.at = 0

    def peek(self) -> str | None:
        return self.items[self.at] if self.at < len(self.items) else None

    def take(self, expected: str | None = None) -> str:
        token = self.items[self.at]
        if expected is not None and token != expected:
            raise ValueError(f"plugin.wit: expected {expected!r}, found {token!r}")
        self.at += 1
        return token

    def name(self) -> str:
        return self.take().lstrip("%")

    def skip_to(self, token: str) -> None:
        while self.take() != token:
            pass


def _parse_type(tokens: _Tokens) -> WitType:
    head = tokens.name()
    if head in ("list", "option"):
        tokens.take("<")
        inner = _parse_type(tokens)
        tokens.take(">")
        return (head, inner)
    if head == "tuple":
        tokens.take("<")
        items = [_parse_type(tokens)]
        while tokens.peek() == ",":
            tokens.take(",")
            items.append(_parse_type(tokens))
        tokens.take(">")
        return ("tuple", tuple(items))
    if head == "result":
        ok: WitType | None = None
        err: WitType | None = None
        if tokens.peek() == "<":
            tokens.take("<")
            if tokens.peek() == "_":
                tokens.take("_")
            else:
                ok = _parse_type(tokens)
            if tokens.peek() == ",":
                tokens.take(",")
                err = _parse_type(tokens)
            tokens.take(">")
        return ("result", ok, err)
    if head in _PRIMITIVES or head == "string":
        return head
    return ("named", head)


def _parse_list(tokens: _Tokens, item: Any) -> list[Any]:
    """``{ item, item, ... }`` with an optional trailing comma."""
    tokens.take("{")
    items = []
    while tokens.peek() != "}":
        items.append(item(tokens))
        if tokens.peek() == ",":
            tokens.take(",")
    tokens.take("}")
    return items


def _parse_interface(tokens: _Tokens, definitions: dict[str, Definition]) -> Interface:
    name = tokens.name()
    tokens.take("{")
    uses: list[tuple[str, tuple[str, ...]]] = []
    defined: list[str] = []
    functions: list[Function] = []
    while tokens.peek() != "}":
        keyword = tokens.take()
        if keyword == "use":
            source = tokens.name()
            tokens.take(".")
            names = _parse_list(tokens, _Tokens.name)
            tokens.take(";")
            uses.append((source, tuple(names)))
        elif keyword in ("record", "enum", "variant"):
            type_name = tokens.name()
            if keyword == "record":

                def field(t: _Tokens) -> tuple[str, WitType]:
                    label = t.name()
                    t.take(":")
                    return (label, _parse_type(t))

                body: Any = tuple(_parse_list(tokens, field))
            elif keyword == "enum":
                body = tuple(_parse_list(tokens, _Tokens.name))
            else:

                def case(t: _Tokens) -> tuple[str, WitType | None]:
                    label = t.name()
                    payload = None
                    if t.peek() == "(":
                        t.take("(")
                        payload = _parse_type(t)
                        t.take(")")
                    return (label, payload)

                body = tuple(_parse_list(tokens, case))
            definitions[type_name] = (keyword, body)
            defined.append(type_name)
        elif keyword == "type":
            type_name = tokens.name()
            tokens.take("=")
            definitions[type_name] = ("alias", _parse_type(tokens))
            tokens.take(";")
            defined.append(type_name)
        elif tokens.peek() == ":":
            tokens.take(":")
            tokens.take("func")
            tokens.take("(")
            params = []
            while tokens.peek() != ")":
                label = tokens.name()
                tokens.take(":")
                params.append((label, _parse_type(tokens)))
                if tokens.peek() == ",":
                    tokens.take(",")
            tokens.take(")")
            result = None
            if tokens.peek() == "->":
                tokens.take("->")
                result = _parse_type(tokens)
            tokens.take(";")
            functions.append(Function(keyword.lstrip("%"), tuple(params), result))
        else:
            # flags, resources, ...: this file would need to learn them.
            raise NotImplementedError(f"plugin.wit: {keyword!r} in interface {name!r}")
    tokens.take("}")
    return Interface(name, tuple(uses), tuple(defined), tuple(functions))


@functools.cache
def contract() -> Contract:
    """The contract of this checkout's ``wit/plugin.wit``."""
    tokens = _Tokens((wit_dir() / "plugin.wit").read_text(encoding="utf-8"))
    package = ""
    definitions: dict[str, Definition] = {}
    interfaces: dict[str, Interface] = {}
    exports: list[str] = []
    while tokens.peek() is not None:
        keyword = tokens.take()
        if keyword == "package":
            package = tokens.take() + tokens.take(":") + tokens.take()
            tokens.skip_to(";")
        elif keyword == "interface":
            interface = _parse_interface(tokens, definitions)
            interfaces[interface.name] = interface
        elif keyword == "world":
            tokens.name()
            tokens.take("{")
            while tokens.peek() != "}":
                if tokens.take() == "export":
                    exports.append(tokens.name())
                tokens.skip_to(";")
            tokens.take("}")
        else:
            raise NotImplementedError(f"plugin.wit: top-level {keyword!r}")
    return Contract(package, definitions, interfaces, tuple(exports))


# --- the canonical ABI: sizes, alignments, flattening --------------------------------------


def _cases(c: Contract, t: WitType) -> list[tuple[str, WitType | None]] | None:
    """The cases of a variant-like type (enum, option, result, variant), else None."""
    t = c.resolve(t)
    if isinstance(t, tuple) and t[0] == "option":
        return [("none", None), ("some", t[1])]
    if isinstance(t, tuple) and t[0] == "result":
        return [("ok", t[1]), ("err", t[2])]
    if isinstance(t, tuple) and t[0] == "named":
        kind, body = c.definitions[t[1]]
        if kind == "enum":
            return [(name, None) for name in body]
        if kind == "variant":
            return list(body)
    return None


def _fields(c: Contract, t: WitType) -> list[tuple[str, WitType]] | None:
    """The fields of a record or tuple (a tuple's are named 0, 1, ...), else None."""
    t = c.resolve(t)
    if isinstance(t, tuple) and t[0] == "tuple":
        return [(str(i), item) for i, item in enumerate(t[1])]
    if isinstance(t, tuple) and t[0] == "named" and c.definitions[t[1]][0] == "record":
        return list(c.definitions[t[1]][1])
    return None


def _align_to(offset: int, alignment: int) -> int:
    return -(-offset // alignment) * alignment


def _discriminant_size(cases: int) -> int:
    return 1 if cases <= 1 << 8 else 2 if cases <= 1 << 16 else 4


def size_align(c: Contract, t: WitType) -> tuple[int, int]:
    """The canonical ABI's size and alignment of a value of type ``t``."""
    t = c.resolve(t)
    if t == "string" or (isinstance(t, tuple) and t[0] == "list"):
        return 8, 4
    if isinstance(t, str):
        size = _PRIMITIVES[t][0]
        return size, size
    fields = _fields(c, t)
    if fields is not None:
        offset, alignment = 0, 1
        for _, field in fields:
            size, align = size_align(c, field)
            offset = _align_to(offset, align) + size
            alignment = max(alignment, align)
        return _align_to(offset, alignment), alignment
    cases = _cases(c, t)
    assert cases is not None, t
    disc = _discriminant_size(len(cases))
    payloads = [size_align(c, p) for _, p in cases if p is not None]
    payload_align = max((a for _, a in payloads), default=1)
    payload_size = max((s for s, _ in payloads), default=0)
    alignment = max(disc, payload_align)
    return _align_to(_align_to(disc, payload_align) + payload_size, alignment), alignment


def payload_offset(c: Contract, t: WitType) -> int:
    """Where a variant-like value's payload starts."""
    cases = _cases(c, t)
    assert cases is not None
    payload_align = max((size_align(c, p)[1] for _, p in cases if p is not None), default=1)
    return _align_to(_discriminant_size(len(cases)), payload_align)


def offset_of(c: Contract, t: WitType, path: Sequence[str]) -> int:
    """The offset of a nested part of a ``t`` value: fields by name, payloads by case name."""
    offset = 0
    for step in path:
        fields = _fields(c, t)
        if fields is not None:
            at = 0
            for name, field in fields:
                at = _align_to(at, size_align(c, field)[1])
                if name == step:
                    offset, t = offset + at, field
                    break
                at += size_align(c, field)[0]
            else:
                raise KeyError(step)
        else:
            cases = dict(_cases(c, t) or [])
            offset, t = offset + payload_offset(c, t), cases[step]
    return offset


def _join(a: str, b: str) -> str:
    if a == b:
        return a
    if {a, b} == {"i32", "f32"}:
        return "i32"
    return "i64"


def flatten(c: Contract, t: WitType) -> list[str]:
    """The core value types a ``t`` value flattens to."""
    t = c.resolve(t)
    if t == "string" or (isinstance(t, tuple) and t[0] == "list"):
        return ["i32", "i32"]
    if isinstance(t, str):
        return [_PRIMITIVES[t][1]]
    fields = _fields(c, t)
    if fields is not None:
        return [core for _, field in fields for core in flatten(c, field)]
    cases = _cases(c, t)
    assert cases is not None, t
    joined: list[str] = []
    for _, payload in cases:
        for i, core in enumerate(flatten(c, payload) if payload is not None else []):
            if i < len(joined):
                joined[i] = _join(joined[i], core)
            else:
                joined.append(core)
    return ["i32", *joined]


# --- values in linear memory ---------------------------------------------------------------


@attrs.frozen
class RawString:
    """A string written as a raw (pointer, length) pair: a forged one points anywhere."""

    pointer: int
    length: int


@attrs.frozen
class Utf16:
    """A string written in UTF-16 (the length's top bit set), from raw code units."""

    units: bytes


class Image:
    """The static data of a component's memory, from ``base`` on: values laid out by type.

    A value is Python data: ``str`` or ``bytes`` for a string (bytes are its
    Latin-1 code units), ``dict`` for a record, ``tuple`` for a tuple, ``list``
    for a list, a case name or a raw ``int`` for an enum, ``None`` / the payload
    for an option, ``(case, payload)`` for a result or variant.
    """

    def __init__(self, c: Contract, base: int) -> None:
        self.contract = c
        self.base = base
        self.data = bytearray()

    @property
    def end(self) -> int:
        return self.base + len(self.data)

    def alloc(self, size: int, alignment: int) -> int:
        start = _align_to(self.end, alignment)
        self.data.extend(bytes(start + size - self.end))
        return start

    def write(self, address: int, raw: bytes) -> None:
        self.data[address - self.base : address - self.base + len(raw)] = raw

    def add(self, t: WitType, value: Any) -> int:
        """A new ``t`` value; its address."""
        address = self.alloc(*size_align(self.contract, t))
        self.store(t, value, address)
        return address

    def add_bytes(self, raw: bytes) -> int:
        address = self.alloc(len(raw), 2)  # latin1+utf16 strings start at even addresses
        self.write(address, raw)
        return address

    def store(self, t: WitType, value: Any, address: int) -> None:
        c = self.contract
        t = c.resolve(t)
        if t == "string":
            if isinstance(value, RawString):
                self.write(address, struct.pack("<II", value.pointer, value.length))
                return
            if isinstance(value, Utf16):
                units = len(value.units) // 2
                pointer = self.add_bytes(value.units)
                self.write(address, struct.pack("<II", pointer, 1 << 31 | units))
                return
            raw = value if isinstance(value, bytes) else value.encode("latin-1")
            self.write(address, struct.pack("<II", self.add_bytes(raw), len(raw)))
            return
        if isinstance(t, str):
            size = _PRIMITIVES[t][0]
            self.write(address, (int(value) % (1 << 8 * size)).to_bytes(size, "little"))
            return
        if isinstance(t, tuple) and t[0] == "list":
            size, alignment = size_align(c, t[1])
            start = self.alloc(size * len(value), alignment)
            for i, item in enumerate(value):
                self.store(t[1], item, start + i * size)
            self.write(address, struct.pack("<II", start, len(value)))
            return
        fields = _fields(c, t)
        if fields is not None:
            items = value if isinstance(value, Mapping) else dict(enumerate(value))
            for name, field in fields:
                key = name if isinstance(value, Mapping) else int(name)
                if key in items:
                    self.store(field, items[key], address + offset_of(c, t, [name]))
            return
        cases = _cases(c, t)
        assert cases is not None, t
        names = [name for name, _ in cases]
        case: int | str
        if isinstance(t, tuple) and t[0] == "option":
            case, payload = ("none", None) if value is None else ("some", value)
        elif isinstance(value, int | str):  # an enum: a case name, or a raw (forged) number
            case, payload = value, None
        else:
            case, payload = value
        index = case if isinstance(case, int) else names.index(case)
        self.write(address, index.to_bytes(_discriminant_size(len(cases)), "little"))
        payload_type = dict(cases).get(case) if isinstance(case, str) else None
        if payload_type is not None:
            self.store(payload_type, payload, address + payload_offset(c, t))


def _wat_bytes(raw: bytes) -> str:
    return '"' + "".join(f"\\{b:02x}" for b in raw) + '"'


# --- a component: the contract's plumbing around hand-written function bodies --------------

_BASE = 1024  # static data from here; below it stays zero
_HOLDS_ATTACK = "(call $has_attack (local.get $p0) (local.get $p1))"  # the batch argument

_CORE_HELPERS = """
  ;; A bump allocator: the host lowers arguments through it; nothing is freed.
  (func $realloc (export "cabi_realloc")
    (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
    (local $p i32) (local $end i32) (local $have i32)
    (local.set $p (i32.and (i32.add (global.get $bump) (i32.sub (local.get $align) (i32.const 1)))
                           (i32.sub (i32.const 0) (local.get $align))))
    (local.set $end (i32.add (local.get $p) (local.get $size)))
    (local.set $have (i32.mul (memory.size) (i32.const 65536)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq (memory.grow (i32.add (i32.const 1) (i32.div_u
                      (i32.sub (local.get $end) (local.get $have)) (i32.const 65536))))
                    (i32.const -1))
          (then unreachable))))
    (if (local.get $old)
      (then (memory.copy (local.get $p) (local.get $old)
              (select (local.get $old_size) (local.get $size)
                      (i32.lt_u (local.get $old_size) (local.get $size))))))
    (global.set $bump (local.get $end))
    (local.get $p))

  ;; Whether the bytes [p, p + n) hold "attack".
  (func $has_attack (param $p i32) (param $n i32) (result i32)
    (local $end i32)
    (if (i32.lt_u (local.get $n) (i32.const 6)) (then (return (i32.const 0))))
    (local.set $end (i32.add (local.get $p) (i32.sub (local.get $n) (i32.const 5))))
    (block $done
      (loop $scan
        (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
        (if (i32.and (i32.eq (i32.load (local.get $p)) (i32.const 0x61747461))
                     (i32.eq (i32.load16_u offset=4 (local.get $p)) (i32.const 0x6b63)))
          (then (return (i32.const 1))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $scan)))
    (i32.const 0))
"""

def _wat_type(t: WitType) -> str:
    if isinstance(t, str):
        return t
    if t[0] == "named":
        return f"${t[1]}"
    if t[0] in ("list", "option"):
        return f"({t[0]} {_wat_type(t[1])})"
    if t[0] == "tuple":
        return "(tuple " + " ".join(_wat_type(item) for item in t[1]) + ")"
    ok = f" {_wat_type(t[1])}" if t[1] is not None else ""
    err = f" (error {_wat_type(t[2])})" if t[2] is not None else ""
    return f"(result{ok}{err})"


def _wat_definition(definition: Definition) -> str:
    kind, body = definition
    if kind == "record":
        return "(record " + " ".join(f'(field "{n}" {_wat_type(t)})' for n, t in body) + ")"
    if kind == "enum":
        return "(enum " + " ".join(f'"{n}"' for n in body) + ")"
    if kind == "variant":
        return (
            "(variant "
            + " ".join(
                f'(case "{n}" {_wat_type(t)})' if t is not None else f'(case "{n}")'
                for n, t in body
            )
            + ")"
        )
    return _wat_type(body)


def _type_names(t: WitType | None) -> Iterator[str]:
    if t is None or isinstance(t, str):
        return
    if t[0] == "named":
        yield t[1]
    elif t[0] == "tuple":
        for item in t[1]:
            yield from _type_names(item)
    else:
        for part in t[1:]:
            yield from _type_names(part)


def _definition_names(definition: Definition) -> Iterator[str]:
    kind, body = definition
    if kind == "record" or kind == "variant":
        for _, t in body:
            yield from _type_names(t)
    elif kind == "alias":
        yield from _type_names(body)


@attrs.frozen
class Behaviour:
    """What the plugin's export does on a batch holding ``attack`` (else it behaves)."""

    wat: str  # core instructions run when the batch holds "attack"
    wasi: bool = False


LOOP = Behaviour("(loop $spin (br $spin)) (unreachable)")
# A 30 s sleep on WASI's monotonic clock: no wasm code runs while it blocks.
BLOCK = Behaviour("(call $block (call $sub (i64.const 30000000000)))", wasi=True)


class ComponentText:
    """The WAT text of a plugin component of ``kind``, its exports by hand.

    ``attack`` says how the kind's export misbehaves (a :class:`Behaviour`, or
    an output value to forge); ``info`` overrides plugin-info fields;
    ``describe`` replaces describe's body (it must return the plugin-info's
    address: ``{info}`` stands for the built one's, ``{name}`` for its name field's).
    """

    def __init__(
        self,
        kind: str,
        *,
        attack: Behaviour | Mapping[str, Any] | None = None,
        info: Mapping[str, Any] | None = None,
        describe: str | None = None,
    ) -> None:
        self.c = contract()
        self.kind = kind
        self.image = Image(self.c, _BASE)
        self.attack = attack
        self.info = {
            "name": "foreign",
            "kind": kind,
            "params": None,
            "initial": b"",
            "emit": "each",
            "sdk-version": "hand-written WAT",
            "origin": "tests/wasm/test_foreign_hostile.py",
            "has-look-back": False,
            "window": None,
            "parsed-json": False,
            **(info or {}),
        }
        self.describe = describe

    # -- the core module's functions --

    def _body(self, interface: Interface, function: Function) -> str:
        c, image = self.c, self.image
        result = function.result
        if function.name == "describe" and interface.name == "plugin":
            address = image.add(result, self.info)
            if self.describe is not None:
                name = address + offset_of(c, result, ["name"])
                return self.describe.format(info=address, name=name)
            return f"(i32.const {address})"
        if function.name == self.kind and interface.name == "plugin":
            return self._processing_body(result)
        cases = _cases(c, result) if result is not None else None
        if (
            function.name in ("filter", "map", "filter-map", "array-map", "aggregate")
            and cases is not None
            and cases[1][1] is not None
            and _cases(c, cases[1][1]) is not None
        ):
            message = f"this plugin is a {self.kind}, not a {function.name}"
            return f"(i32.const {image.add(result, ('err', ('unsupported', message)))})"
        return self._zero(result)  # init, look-back, and what a later contract adds

    def _zero(self, result: WitType | None) -> str:
        if result is None:
            return ""
        flat = flatten(self.c, result)
        if len(flat) == 1:
            return f"({flat[0]}.const 0)"
        return f"(i32.const {self.image.alloc(*size_align(self.c, result))})"

    def _processing_body(self, result: WitType) -> str:
        """The kind's export: behave on ordinary batches, misbehave on the attack batch."""
        c, image = self.c, self.image
        misbehave = ""
        if isinstance(self.attack, Behaviour):
            misbehave = self.attack.wat
        elif self.attack is not None:
            misbehave = f"(return (i32.const {image.add(result, ('ok', self.attack))}))"
        if misbehave:
            misbehave = f"(if {_HOLDS_ATTACK} (then {misbehave}))"
        count = "(local.set $count (i32.load offset=4 (local.get $p0)))"
        if self.kind == "filter":
            template = image.add(result, ("ok", {"kept": b"", "consumed": 0, "error": None}))
            kept = template + offset_of(c, result, ["ok", "kept"])
            consumed = template + offset_of(c, result, ["ok", "consumed"])
            # Keep every record: an index-list 0, 1, ..., count - 1.
            behave = f"""{count}
    (local.set $out (call $realloc (i32.const 0) (i32.const 0) (i32.const 4)
                      (i32.add (i32.const 4) (i32.shl (local.get $count) (i32.const 2)))))
    (i32.store (local.get $out) (local.get $count))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
      (i32.store offset=4 (i32.add (local.get $out) (i32.shl (local.get $i) (i32.const 2)))
                 (local.get $i))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (i32.store (i32.const {kept}) (local.get $out))
    (i32.store (i32.const {kept + 4})
               (i32.add (i32.const 4) (i32.shl (local.get $count) (i32.const 2))))
    (i32.store (i32.const {consumed}) (local.get $count))
    (i32.const {template})"""
        elif self.kind in ("map", "filter-map", "array-map"):
            template = image.add(result, ("ok", {"records": b"", "consumed": 0, "error": None}))
            records = template + offset_of(c, result, ["ok", "records"])
            consumed = template + offset_of(c, result, ["ok", "consumed"])
            # Return the batch itself, its positions (offsets) turned into input indices.
            behave = f"""{count}
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
      (i64.store offset=9 (i32.add (local.get $p0) (i32.shl (local.get $i) (i32.const 3)))
                 (i64.extend_i32_u (local.get $i)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (i32.store (i32.const {records}) (local.get $p0))
    (i32.store (i32.const {records + 4}) (local.get $p1))
    (i32.store (i32.const {consumed}) (local.get $count))
    (i32.const {template})"""
        else:
            raise NotImplementedError(f"no ordinary behaviour written for a {self.kind}")
        return misbehave + behave

    # -- the component --

    def text(self) -> str:
        c = self.c
        version = CONTRACT_VERSION
        wasi = isinstance(self.attack, Behaviour) and self.attack.wasi
        core_funcs: list[str] = []
        lifts: list[str] = []
        instances: list[str] = []
        imported: list[tuple[str, list[str]]] = []
        for export in c.exports:
            interface = c.interfaces[export]
            if interface.types:
                raise NotImplementedError(f"types defined in exported interface {export!r}")
            members: list[str] = []
            for function in interface.functions:
                flat_params = [core for _, t in function.params for core in flatten(c, t)]
                if len(flat_params) > 16:  # the canonical ABI passes them in memory
                    flat_params = ["i32"]
                params = [f"$p{i}" for i in range(len(flat_params))]
                flat_result = flatten(c, function.result) if function.result is not None else []
                core_result = (
                    "(result i32)"
                    if len(flat_result) > 1
                    else f"(result {flat_result[0]})"
                    if flat_result
                    else ""
                )
                body = self._body(interface, function)
                core_name = f"{export}#{function.name}"
                core_funcs.append(
                    f'  (func (export "{core_name}") '
                    + " ".join(f"(param {p} {t})" for p, t in zip(params, flat_params, strict=True))
                    + f" {core_result}\n"
                    "    (local $count i32) (local $i i32) (local $out i32)\n"
                    f"    {body})"
                )
                signature = " ".join(f'(param "{n}" {_wat_type(t)})' for n, t in function.params)
                if function.result is not None:
                    signature += f" (result {_wat_type(function.result)})"
                lifts.append(
                    f"  (func ${export}-{function.name} {signature}\n"
                    f'    (canon lift (core func $main "{core_name}") (memory $memory)\n'
                    "      (realloc $realloc) string-encoding=latin1+utf16))"
                )
                members.append(f'(export "{function.name}" (func ${export}-{function.name}))')
            instances.append(
                f"  (instance ${export}-instance {' '.join(members)})\n"
                f'  (export "{c.package}/{export}@{version}" (instance ${export}-instance))'
            )
            for source, _ in interface.uses:
                if source not in [name for name, _ in imported]:
                    imported.append((source, list(c.interfaces[source].types)))
        type_imports = [self._type_import(source, names) for source, names in imported]
        pages = _align_to(self.image.end + 65536, 65536) // 65536
        return f"""(component
{"".join(type_imports)}
{WASI_SLEEP_IMPORTS if wasi else ""}
  (core module $m
{WASI_SLEEP_CORE_IMPORTS if wasi else ""}
    (memory (export "memory") {pages})
    (global $bump (mut i32) (i32.const {_align_to(self.image.end, 8)}))
{_CORE_HELPERS}
{chr(10).join(core_funcs)}
    (data (i32.const {self.image.base}) {_wat_bytes(bytes(self.image.data))}))
  (core instance $main (instantiate $m {WASI_SLEEP_WITH if wasi else ""}))
  (alias core export $main "memory" (core memory $memory))
  (alias core export $main "cabi_realloc" (core func $realloc))
{chr(10).join(lifts)}
{chr(10).join(instances)})
"""

    def _type_import(self, source: str, names: list[str]) -> str:
        """The types-only instance ``source`` imported, and an alias of each of its types."""
        c = self.c
        emitted: list[str] = []
        lines: list[str] = []

        def emit(name: str) -> None:
            if name in emitted:
                return
            for needed in _definition_names(c.definitions[name]):
                emit(needed)
            emitted.append(name)
            lines.append(
                f"      (type ${name}-def {_wat_definition(c.definitions[name])})\n"
                f'      (export "{name}" (type ${name} (eq ${name}-def)))'
            )

        for name in names:
            emit(name)
        body = "\n".join(lines)
        aliases = "\n".join(
            f'  (alias export ${source} "{name}" (type ${name}))' for name in emitted
        )
        return (
            f'  (import "{c.package}/{source}@{CONTRACT_VERSION}" (instance ${source}\n'
            f"{body}))\n{aliases}\n"
        )


def component(directory: Path, name: str, kind: str, **options: Any) -> Path:
    """A hand-written component of ``kind`` (see :class:`ComponentText`) as a .wasm file."""
    import wasmtime

    path = directory / f"{name}.wasm"
    path.write_bytes(wasmtime.wat2wasm(ComponentText(kind, **options).text()))
    return path


# --- framings written by hand, after wit/plugin.wit (not with the SDK's writer) ------------


def index_list(*indices: int, count: int | None = None) -> bytes:
    """An ``index-list``; ``count`` forges the count."""
    return struct.pack(f"<I{len(indices)}I", len(indices) if count is None else count, *indices)


def record_batch(
    positions: Sequence[int],
    values: Sequence[bytes],
    *,
    metadata: Sequence[Sequence[tuple[bytes, bytes]]] | None = None,
    magic: bytes = b"DFR1",
    count: int | None = None,
) -> bytes:
    """A ``record-batch`` of values (and raw metadata names/texts); ``count`` forges the count."""
    frame = magic + struct.pack("<IB", len(values) if count is None else count, 4 * bool(metadata))
    frame += struct.pack(f"<{len(positions)}q", *positions)
    frame += struct.pack(f"<{len(values)}I", *map(len, values)) + b"".join(values)
    if metadata:
        entries = [entry for record in metadata for entry in record]
        frame += struct.pack(f"<{len(metadata)}I", *map(len, metadata))
        frame += struct.pack(f"<{len(entries)}I", *(len(name) for name, _ in entries))
        frame += struct.pack(f"<{len(entries)}I", *(len(text) for _, text in entries))
        frame += b"".join(name for name, _ in entries) + b"".join(text for _, text in entries)
    return frame


# --- the tests -----------------------------------------------------------------------------

ATTACK = [Record(b"first", offset=1), Record(b"attack", offset=2), Record(b"last", offset=3)]
NORMAL = [
    Record(b"a", offset=50),
    Record(
        b"\x00b\xe9\xff", key=b"k\xff", timestamp=-5, metadata={"n": "\u00e9t\u00e9"}, offset=51
    ),
]


def assert_next_batch_runs(plugin: Plugin) -> None:
    """The same plugin object still answers an ordinary batch correctly."""
    result = plugin.process(NORMAL)
    assert result.error is None, result.error
    assert result.consumed == len(NORMAL)
    assert [(r.value, r.key, r.timestamp, dict(r.metadata), r.offset) for r in result.outputs] == [
        (r.value, r.key, r.timestamp, dict(r.metadata), r.offset) for r in NORMAL
    ]


@pytest.mark.parametrize("kind", ["filter", "map", "filter-map", "array-map"])
def test_a_hand_written_component_of_the_contract_runs_as_a_plugin(
    tmp_path: Path, kind: str
) -> None:
    """The baseline the attacks below depart from: describe, init and the kind's export
    written by hand in WAT work through the host like any plugin (every column of the
    batch makes the round trip: a filter keeps all, the maps return their input)."""
    wasm = component(tmp_path, "honest", kind)
    with load_plugin(wasm) as plugin:
        assert plugin.name == "foreign"
        assert plugin.kind.value == kind.replace("-", "_")
        assert_next_batch_runs(plugin)
        result = plugin.process(ATTACK)  # without an attack written in, just records
        assert result.error is None
        assert [r.value for r in result.outputs] == [r.value for r in ATTACK]
        # Counts, lengths and positions with bytes above 0x7f: Latin-1 carries them as is.
        many = [Record(bytes([i % 256]) * (i % 200), offset=2**40 + i) for i in range(300)]
        result = plugin.process(many)
        assert result.error is None
        assert [(r.value, r.offset) for r in result.outputs] == [(r.value, r.offset) for r in many]


def test_an_export_that_loops_is_stopped_at_the_time_limit(tmp_path: Path) -> None:
    """``filter`` spinning in a wasm loop on the attack record: the batch fails at the
    limit, is narrowed to the record (one limit for the batch, one for it alone), the
    record before it keeps its output, and the next batch runs on a fresh instance."""
    wasm = component(tmp_path, "spin", "filter", attack=LOOP)
    with load_plugin(wasm, sandbox=Sandbox(time_limit_s=1.0)) as plugin:
        started = time.monotonic()
        result = plugin.process(ATTACK)
        elapsed = time.monotonic() - started
        assert 1.9 < elapsed < 6.0, f"{elapsed:.1f} s for two 1 s limits"
        assert isinstance(result.error, LimitExceededError), result.error
        assert result.error.error_type == "TimeLimitExceeded"
        assert "1 s time limit" in result.error.error_message
        assert (result.error.offset, result.error.record_value) == (2, "attack")
        assert result.consumed == 1
        assert [r.value for r in result.outputs] == [b"first"]
        assert_next_batch_runs(plugin)


def test_an_export_blocked_in_wasi_is_killed_at_the_limit_plus_grace(tmp_path: Path) -> None:
    """``filter`` sleeping 30 s on WASI's monotonic clock, blocked outside wasm
    code: the sandbox process is killed at the limit plus the grace, twice (the
    batch, then the record alone), long before the sleep would end."""
    wasm = component(tmp_path, "nap", "filter", attack=BLOCK)
    with load_plugin(wasm, sandbox=Sandbox(time_limit_s=1.0)) as plugin:
        started = time.monotonic()
        result = plugin.process(ATTACK)
        elapsed = time.monotonic() - started
        # Each kill comes at limit + grace; a new process then loads the component.
        assert 2 * (1.0 + KILL_GRACE_S) <= elapsed < 2 * (1.0 + KILL_GRACE_S) + 8.0, elapsed
        assert isinstance(result.error, LimitExceededError), result.error
        assert result.error.error_type == "TimeLimitExceeded"
        assert (result.error.offset, result.error.record_value) == (2, "attack")
        assert [r.value for r in result.outputs] == [b"first"]
        assert_next_batch_runs(plugin)


def write_pipeline(tmp_path: Path, wasm: Path, lines: Sequence[str]) -> Path:
    """lines -> the component as a filter (time limit 1 s, on_error: skip) -> out.txt."""
    source = tmp_path / "in.txt"
    source.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")

    def connector(kind: str, path: Path) -> dict[str, Any]:
        return {"plugin_type": kind, "connection": {"path": str(path), "format": "lines"}}

    pipeline = tmp_path / "pipeline.yaml"
    doc = {
        "name": "foreign",
        "sources": [{"id": "in", "type": "plugin", "config": connector("file", source)}],
        "processors": [
            {
                "id": "foreign",
                "type": "plugin",
                "config": {
                    "plugin_type": "filter",
                    "plugin_source": "wasm",
                    "plugin_path": str(wasm),
                    "time_limit_s": 1,
                    "on_error": "skip",
                },
            }
        ],
        "sinks": [
            {"id": "out", "type": "plugin", "config": connector("file", tmp_path / "out.txt")}
        ],
    }
    pipeline.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return pipeline


@pytest.mark.parametrize("behaviour", [LOOP, BLOCK], ids=["loops", "blocks"])
def test_a_pipeline_skips_the_record_a_foreign_export_loops_or_blocks_on(
    tmp_path: Path, behaviour: Behaviour
) -> None:
    """``dataflare run`` goes on past the record: the others reach the sink, the run
    succeeds, and stderr holds one line saying which record was skipped and why."""
    wasm = component(tmp_path, "guest", "filter", attack=behaviour)
    pipeline = write_pipeline(tmp_path, wasm, ["first", "attack", "last"])
    done = subprocess.run(
        [sys.executable, "-m", "dataflare", "run", "--quiet", str(pipeline)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.txt").read_text(encoding="utf-8").splitlines() == ["first", "last"]
    assert "Traceback" not in done.stderr
    # Besides the closing summary table: one log line, for the one record.
    logged = [
        line
        for line in without_progress(done.stderr).splitlines()
        if line.startswith(("WARNING", "ERROR", "error"))
    ]
    assert len(logged) == 1, done.stderr
    assert "processor 'foreign' skipped a record" in logged[0]
    assert "TimeLimitExceeded" in logged[0]
    assert "1 s time limit" in logged[0]
    assert "value 'attack'" in logged[0]


# Forged outputs, each against one rule; the attack batch has 3 records (consumed <= 3).
_PROCESSING_ERROR = {
    "plugin": "foreign",
    "kind": "filter",
    "offset": 3,
    "index": 3,
    "error-type": "ValueError",
    "message": "past the end",
}
FORGERIES = [
    # A filter's kept indices (an index-list).
    ("filter", {"kept": index_list(0, 5), "consumed": 3}, "not increasing indices below 3"),
    ("filter", {"kept": index_list(2, 1), "consumed": 3}, "found 1 after 2"),
    ("filter", {"kept": index_list(0, count=0xFFFFFFFF), "consumed": 3}, "the indices needs"),
    ("filter", {"kept": index_list(0) + b"\x00", "consumed": 3}, "follow the last column"),
    ("filter", {"kept": index_list(), "consumed": 0xFFFFFFFF}, "4294967295 consumed of 3"),
    (
        "filter",
        {"kept": index_list(0), "consumed": 3, "error": _PROCESSING_ERROR},
        "error past the batch's end",
    ),
    # Records (a record-batch) from a map or filter-map.
    (
        "map",
        {"records": record_batch([], [], count=0xFFFFFFFF), "consumed": 3},
        "the positions column needs",
    ),
    (
        "map",
        {"records": record_batch([0, 1, 2], [b"a", b"b", b"c"])[:-1], "consumed": 3},
        "the values needs",
    ),
    (
        "map",
        {"records": record_batch([0, 1, 2], [b"a", b"b", b"c"], magic=b"DFR0"), "consumed": 3},
        "magic",
    ),
    (
        "map",
        {
            "records": record_batch(
                [0, 1, 2], [b"a", b"b", b"c"], metadata=[[(b"\xff\xfe", b"x")], [], []]
            ),
            "consumed": 3,
        },
        "metadata is not UTF-8",
    ),
    (
        "map",
        {"records": record_batch([0, 1, 2, 2], [b"a", b"b", b"c", b"d"]), "consumed": 3},
        "exactly one record per input",
    ),
    (
        "map",
        {"records": record_batch([0, 2, 1], [b"a", b"b", b"c"]), "consumed": 3},
        "out of order",
    ),
    (
        "filter-map",
        {"records": record_batch([0, 0], [b"a", b"b"]), "consumed": 3},
        "at most one record per input",
    ),
    (
        "map",
        {"records": Utf16("DFR1\u0100".encode("utf-16-le")), "consumed": 3},
        "is above U+00FF",
    ),
]
FORGERY_IDS = [
    "kept-out-of-range",
    "kept-decreasing",
    "kept-oversized-count",
    "kept-trailing-bytes",
    "huge-consumed",
    "error-past-the-end",
    "records-oversized-count",
    "records-lengths-past-the-end",
    "records-bad-magic",
    "records-invalid-utf8-metadata",
    "map-more-records-than-inputs",
    "records-sources-decreasing",
    "filter-map-two-records-from-one",
    "records-text-above-latin-1",
]


@pytest.mark.parametrize(("kind", "output", "reason"), FORGERIES, ids=FORGERY_IDS)
def test_a_forged_output_is_a_serialization_error_and_the_plugin_goes_on(
    tmp_path: Path, kind: str, output: dict[str, Any], reason: str
) -> None:
    """A broken output is refused as a SerializationError saying which rule it broke,
    with no crash or hang; the next batch runs (on a fresh instance)."""
    wasm = component(tmp_path, "forger", kind, attack=output)
    with load_plugin(wasm, sandbox=Sandbox(time_limit_s=10.0)) as plugin:
        started = time.monotonic()
        with pytest.raises(SerializationError) as caught:
            plugin.process(ATTACK)
        assert time.monotonic() - started < 5.0
        assert reason in str(caught.value)
        assert "\n" not in str(caught.value)
        assert_next_batch_runs(plugin)


@pytest.mark.parametrize(("kind", "output", "reason"), FORGERIES, ids=FORGERY_IDS)
def test_a_forged_output_error_names_the_component(
    tmp_path: Path, kind: str, output: dict[str, Any], reason: str
) -> None:
    """The SerializationError names the component that forged the output, as the
    host's other checks of guest values do (consumed, sources, call-error), so a
    pipeline of several components says which one is broken."""
    wasm = component(tmp_path, "forger", kind, attack=output)
    with load_plugin(wasm) as plugin, pytest.raises(SerializationError) as caught:
        plugin.process(ATTACK)
    assert str(wasm) in str(caught.value)


def test_dataflare_test_on_a_forging_component_prints_one_error_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from dataflare_host.cli._main import main

    wasm = component(tmp_path, "forger", "filter", attack=FORGERIES[0][1])
    result = CliRunner().invoke(main, ["test", str(wasm), "--text", "first\nattack\nlast"])
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    lines = without_progress(result.stderr).strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "not increasing indices below" in lines[0]


# Strings the canonical ABI itself cannot lift: the call fails, the host does not.
_LONE_SURROGATE = Utf16(b"\x00\xd8")


@pytest.mark.parametrize(
    "text",
    [RawString(0xFFFF0000, 64), RawString(_BASE, 0x7FFFFFFF), _LONE_SURROGATE],
    ids=["pointer-outside-memory", "length-past-memory", "lone-surrogate"],
)
def test_a_string_the_canonical_abi_cannot_lift_fails_the_batch_not_the_host(
    tmp_path: Path, text: Any
) -> None:
    """A ``kept`` string pointing outside the guest's memory, or UTF-16 that is not
    text: wasmtime refuses to lift it, the batch fails as a trap naming the plugin,
    the instance is replaced, and the next batch runs."""
    wasm = component(tmp_path, "liar", "filter", attack={"kept": text, "consumed": 3})
    with load_plugin(wasm) as plugin:
        result = plugin.process(ATTACK)
        assert isinstance(result.error, ProcessingError), result.error
        assert result.error.error_type == "Trap"
        assert result.error.plugin == "foreign"
        assert "trapped" in result.error.error_message
        assert result.consumed == 0
        assert result.outputs == []
        assert_next_batch_runs(plugin)


_TEN_MB = 10 << 20
# describe writes a 10 MB name at run time (no 10 MB data segment to parse).
_HUGE_NAME = f"""
    (local.set $out (call $realloc (i32.const 0) (i32.const 0) (i32.const 2) (i32.const {_TEN_MB})))
    (memory.fill (local.get $out) (i32.const 0x61) (i32.const {_TEN_MB}))
    (i32.store (i32.const {{name}}) (local.get $out))
    (i32.store offset=4 (i32.const {{name}}) (i32.const {_TEN_MB}))
    (i32.const {{info}})"""


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"describe": _HUGE_NAME}, "name is longer than 256 characters"),
        ({"info": {"kind": 9}}, "describe trapped"),
        ({"info": {"emit": 7}}, "describe trapped"),
        ({"info": {"name": RawString(0xFFFFFFF0, 64)}}, "describe trapped"),
        ({"info": {"name": _LONE_SURROGATE}}, "describe trapped"),
        ({"info": {"initial": Utf16("\u0100".encode("utf-16-le"))}}, "malformed plugin-info"),
    ],
    ids=[
        "name-of-10-MB",
        "unknown-kind",
        "unknown-emit",
        "name-outside-memory",
        "name-not-text",
        "initial-above-latin-1",
    ],
)
def test_describe_returning_garbage_is_one_load_error_and_the_host_goes_on(
    tmp_path: Path, options: dict[str, Any], reason: str
) -> None:
    """What describe returns is checked before anything uses it: each piece of garbage
    is one ConfigurationError naming the component, and the host then loads and runs
    an honest component as before."""
    wasm = component(tmp_path, "garbage", "filter", **options)
    started = time.monotonic()
    with pytest.raises(ConfigurationError) as caught:
        load_plugin(wasm)
    assert time.monotonic() - started < 20
    message = str(caught.value)
    assert str(wasm) in message
    assert reason in message
    assert len(message) < 1000
    with load_plugin(component(tmp_path, "honest", "filter")) as plugin:
        assert_next_batch_runs(plugin)


def test_a_component_rewritten_at_the_same_path_is_loaded_afresh(tmp_path: Path) -> None:
    """A .wasm replaced on disk (a rebuild, a swap) and loaded again in the same host
    process runs the new file, not the one a pooled sandbox process loaded before.

    Found with these components: sandbox processes are pooled, and one whose last
    component had the same path used to skip loading, so the old component answered
    (here: a filter named first-build for a file that now holds a map).
    """
    path = component(tmp_path, "swapped", "filter", info={"name": "first-build"})
    with load_plugin(path) as plugin:
        assert (plugin.name, plugin.kind.value) == ("first-build", "filter")
    component(tmp_path, "swapped", "map", info={"name": "second-build"})  # same path
    with load_plugin(path) as plugin:
        assert (plugin.name, plugin.kind.value) == ("second-build", "map")
