"""Constructor argument checks: one rule and one message per setting, whoever takes it."""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["check_choice", "check_max_margin", "check_seconds", "check_window", "require"]


def require(ok: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``ok``."""
    if not ok:
        raise ValueError(message)


def check_window(
    qps: float, period: float, margin: float, min_rate: float, *, qps_hint: str = ""
) -> None:
    """Refuse a ceiling that is not ``qps >= 1`` requests per positive ``period``, counted
    over ``period + margin`` (``margin >= 0``), with ``0 < min_rate <= qps``.

    ``qps_hint`` is appended to the ``qps`` message (what to do instead).
    """
    if not math.isfinite(qps) or qps < 1:
        raise ValueError(f"qps must be a finite number >= 1, got {qps!r}{qps_hint}")
    if not math.isfinite(period) or period <= 0:
        raise ValueError(f"period must be a positive number of seconds, got {period!r}")
    if not math.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be >= 0 seconds, got {margin!r}")
    if not math.isfinite(min_rate) or not 0 < min_rate <= qps:
        raise ValueError(f"min_rate must be > 0 and <= qps ({qps!r}), got {min_rate!r}")


def check_max_margin(margin: float, max_margin: float) -> None:
    """Refuse a widest margin that is not finite and at least ``margin``."""
    if not math.isfinite(max_margin) or max_margin < margin:
        raise ValueError(f"max_margin must be >= margin ({margin!r}) seconds, got {max_margin!r}")


def check_seconds(name: str, value: float) -> None:
    """Refuse a duration ``name`` that is not a finite number of seconds >= 0."""
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")


def check_choice(name: str, value: object, choices: Iterable[str]) -> None:
    """Refuse ``value`` unless it is one of ``choices`` (named in the message)."""
    allowed = tuple(choices)
    if value not in allowed:
        listed = " or ".join(repr(choice) for choice in allowed)
        raise ValueError(f"{name} must be {listed}, got {value!r}")
