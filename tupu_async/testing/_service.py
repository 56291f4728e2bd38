"""A helper started and stopped by hand or with ``with``."""

from __future__ import annotations

from typing import TypeVar

__all__ = ["Service"]

_S = TypeVar("_S", bound="Service")


class Service:
    """A base for ``start()`` (returning self) and ``stop()``; ``with`` calls both."""

    def start(self: _S) -> _S:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
