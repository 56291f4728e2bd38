"""Rehoming public names: ``tupu_async.APIError``, not ``tupu_async._exceptions.APIError``."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["rehome"]


def rehome(namespace: Mapping[str, Any], names: Iterable[str], module: str) -> None:
    """Set ``__module__`` to ``module`` on each class and function in ``names``.

    Type aliases and constants are skipped. String annotations are first evaluated in the
    defining module, so ``typing.get_type_hints`` and msgspec still resolve them afterwards;
    one that cannot be evaluated there (a ``TYPE_CHECKING``-only name) stays a string.
    """
    for name in names:
        value = namespace[name]
        if isinstance(value, type) or hasattr(value, "__code__"):
            _resolve_annotations(value)
            value.__module__ = module


def _resolve_annotations(obj: Any) -> None:
    annotations = inspect.get_annotations(obj)
    if not annotations:
        return
    home = vars(sys.modules[obj.__module__])
    local = dict(vars(obj)) if isinstance(obj, type) else None
    resolved = {}
    for key, value in annotations.items():
        try:
            resolved[key] = eval(value, home, local) if isinstance(value, str) else value
        except (NameError, TypeError):
            resolved[key] = value
    obj.__annotations__ = resolved
