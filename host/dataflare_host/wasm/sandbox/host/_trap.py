"""The host's word for an instance that trapped, hit a limit or had to be killed."""

from __future__ import annotations

__all__ = ["Trap"]


class Trap(Exception):
    """The instance trapped, hit a limit or had to be killed: it must not be used again.

    ``timed_out`` says the time limit ended it; ``memory`` that the memory cap did.
    A sandbox process reports its own trap
    (:class:`~dataflare_host.wasm.sandbox.child._instance.GuestTrap`), which the
    host turns into this.
    """

    def __init__(self, message: str, *, timed_out: bool, memory: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out
        self.memory = memory
