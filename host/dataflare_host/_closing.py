"""``with``-block support for everything that holds resources and has ``close()``."""

from __future__ import annotations

from types import TracebackType
from typing import Self

__all__ = ["Closing"]


class Closing:
    """Mixin: ``with obj:`` closes ``obj`` on the way out (``close`` must be safe twice)."""

    def close(self) -> None:
        """Release what the object holds; subclasses override, safe to call twice."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
