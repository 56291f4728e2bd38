"""Argument checks shared by constructors: one line per rule, in the order written."""

from __future__ import annotations

__all__ = ["require"]


def require(ok: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``ok``."""
    if not ok:
        raise ValueError(message)
