"""Pieces of hand-written components (WebAssembly text format) that block in WASI.

A component that sleeps imports the WASI 0.2 clock and poll interfaces (wasmtime's linker
provides them) and lowers two functions its core module imports as ``"wasi" "sub"`` (a
pollable for a duration) and ``"wasi" "block"`` (wait on it).
"""

from __future__ import annotations

WASI_SLEEP_IMPORTS = """
  (import "wasi:io/poll@0.2.0" (instance $poll
    (export "pollable" (type (sub resource)))
    (export "[method]pollable.block" (func (param "self" (borrow 0))))))
  (alias export $poll "pollable" (type $pollable))
  (import "wasi:clocks/monotonic-clock@0.2.0" (instance $clock
    (alias outer 1 $pollable (type))
    (export "pollable" (type (eq 0)))
    (export "subscribe-duration" (func (param "when" u64) (result (own 1))))))
  (core func $wasi_sub (canon lower (func $clock "subscribe-duration")))
  (core func $wasi_block (canon lower (func $poll "[method]pollable.block")))
"""
"""The component's imports and the two lowered functions, ``$wasi_sub`` and ``$wasi_block``."""

WASI_SLEEP_CORE_IMPORTS = """
  (import "wasi" "sub" (func $sub (param i64) (result i32)))
  (import "wasi" "block" (func $block (param i32)))
"""
"""The core module's imports of them, as ``$sub`` and ``$block``."""

WASI_SLEEP_WITH = (
    '(with "wasi" (instance (export "sub" (func $wasi_sub)) (export "block" (func $wasi_block))))'
)
"""What the core module's instantiation passes for its ``"wasi"`` imports."""
