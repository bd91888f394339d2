"""Tiny native plugins the chain tests compose (shared by test_chain and test_chain_semantics)."""

from __future__ import annotations

import dataflare
from dataflare import Record
from dataflare_host import Plugin, load_plugin


def suffix(tag: bytes) -> Plugin:
    """A map that appends ``tag`` to every value."""

    @dataflare.map(name=f"add_{tag.decode()}")
    def add(record: Record) -> Record:
        return record.evolve(value=record.value + tag)

    return load_plugin(add)


def failing_on(value: bytes, name: str = "picky") -> Plugin:
    """A map that raises ValueError on values starting with ``value``."""

    @dataflare.map(name=name)
    def picky(record: Record) -> Record:
        if record.value.startswith(value):
            raise ValueError(f"refused {record.value!r}")
        return record

    return load_plugin(picky)
