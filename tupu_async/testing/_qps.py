"""The fake server's QPS limit: accepted request starts per secret id in a trailing window.

A request reaching the gate at ``t`` is accepted when fewer than ``limit`` accepted
requests of the same secret id reached it in ``(t - window, t]``; rejected requests do
not take a slot. ``foreign_qps`` adds another client on every secret id, sending evenly
paced requests from the secret id's first request on; its accepted ones take slots too.
"""

from __future__ import annotations

import bisect
import collections

__all__ = ["SlidingWindowLimit"]


class SlidingWindowLimit:
    """Per-key sliding-window admission: ``limit`` None admits everything.

    Times may come out of order (a request stamped on arrival can reach the gate after a
    later arrival whose body was read sooner); each is counted at its own time.
    """

    __slots__ = (
        "_foreign_next",
        "_windows",
        "foreign_accepted",
        "foreign_qps",
        "foreign_throttled",
        "limit",
        "window",
    )

    def __init__(self, limit: float | None, window: float = 1.0, foreign_qps: float = 0.0) -> None:
        if limit is not None and limit <= 0:
            raise ValueError(f"qps_limit must be > 0 or None (no limit), not {limit!r}")
        if foreign_qps < 0:
            raise ValueError(f"foreign_qps must be >= 0 requests per second, not {foreign_qps!r}")
        self.limit = limit
        self.window = window
        self.foreign_qps = foreign_qps
        self.foreign_accepted = 0
        self.foreign_throttled = 0
        self._windows: dict[str, collections.deque[float]] = {}
        self._foreign_next: dict[str, float] = {}

    def try_acquire(self, key: str, now: float) -> bool:
        """Admit (and count) one request of ``key`` reaching the gate at monotonic ``now``."""
        limit = self.limit
        if limit is None:
            return True
        arrivals = self._windows.get(key)
        if arrivals is None:
            arrivals = self._windows[key] = collections.deque()
        if self.foreign_qps > 0:
            self._admit_foreign(key, arrivals, limit, now)
        elif self._foreign_next:
            self._foreign_next.clear()  # switched off: a later switch-on starts afresh
        return self._admit(arrivals, limit, now)

    def _admit(self, arrivals: collections.deque[float], limit: float, now: float) -> bool:
        cutoff = now - self.window
        while arrivals and arrivals[0] <= cutoff:
            arrivals.popleft()
        if len(arrivals) >= limit:
            return False
        if arrivals and now < arrivals[-1]:
            bisect.insort(arrivals, now)  # kept sorted, so the pruning above stays exact
        else:
            arrivals.append(now)
        return True

    def _admit_foreign(
        self, key: str, arrivals: collections.deque[float], limit: float, now: float
    ) -> None:
        """Let the foreign client's requests due up to ``now`` through the gate, in order."""
        spacing = 1.0 / self.foreign_qps
        due = self._foreign_next.get(key, now)
        idle = now - self.window - due
        if idle > 0:  # a quiet gap: those requests all went through, none is in the window
            skipped = int(idle // spacing) + 1
            self.foreign_accepted += skipped
            due += skipped * spacing
        while due <= now:
            if self._admit(arrivals, limit, due):
                self.foreign_accepted += 1
            else:
                self.foreign_throttled += 1
            due += spacing
        self._foreign_next[key] = due

    def reset(self) -> None:
        self._windows.clear()
        self._foreign_next.clear()
        self.foreign_accepted = 0
        self.foreign_throttled = 0
