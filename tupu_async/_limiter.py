"""Rate limiting: the interface every limiter backend implements.

(Implementations are being written; see the RateLimiter protocol for the contract.)
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["RateLimiter"]


@runtime_checkable
class RateLimiter(Protocol):
    """What the client needs from a limiter.

    Guarantee every implementation must give: across everything sharing the limiter, no
    more than ``qps`` calls to :meth:`acquire` return within ANY trailing window of
    ``period`` seconds (default 1 s). One permit is one HTTP attempt, retries included.
    """

    @property
    def qps(self) -> float:
        """The configured ceiling (requests per period)."""
        ...

    @property
    def current_rate(self) -> float:
        """The rate in force now: lower than ``qps`` after throttling, recovering over time."""
        ...

    async def acquire(self) -> None:
        """Wait until one more request may start now, then take that slot."""
        ...

    async def on_throttle(self, retry_after: float | None = None) -> None:
        """The service throttled us (HTTP 429): pause everyone, lower the rate."""
        ...

    def on_success(self) -> None:
        """A request went through: let a lowered rate recover (additive increase)."""
        ...

    async def aclose(self) -> None:
        """Release resources (connections for shared backends)."""
        ...
