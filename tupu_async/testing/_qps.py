"""The fake server's QPS limit: accepted request starts per secret id in a trailing window.

A request arriving at ``t`` is accepted when fewer than ``limit`` accepted requests of the
same secret id arrived in ``(t - window, t]``; rejected requests do not take a slot.
"""

from __future__ import annotations

import collections

__all__ = ["SlidingWindowLimit"]


class SlidingWindowLimit:
    """Per-key sliding-window admission: ``limit`` None admits everything."""

    __slots__ = ("_windows", "limit", "window")

    def __init__(self, limit: float | None, window: float = 1.0) -> None:
        if limit is not None and limit <= 0:
            raise ValueError(f"qps_limit must be > 0 or None (no limit), not {limit!r}")
        self.limit = limit
        self.window = window
        self._windows: dict[str, collections.deque[float]] = {}

    def try_acquire(self, key: str, now: float) -> bool:
        """Admit (and count) one request of ``key`` arriving at monotonic time ``now``."""
        limit = self.limit
        if limit is None:
            return True
        arrivals = self._windows.get(key)
        if arrivals is None:
            arrivals = self._windows[key] = collections.deque()
        cutoff = now - self.window
        while arrivals and arrivals[0] <= cutoff:
            arrivals.popleft()
        if len(arrivals) >= limit:
            return False
        arrivals.append(now)
        return True

    def reset(self) -> None:
        self._windows.clear()
