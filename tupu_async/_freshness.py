"""Freshness of signed responses: refuse stale answers and replays of accepted ones.

A response must carry a ``timestamp`` within ``max_age`` of the local clock, and a
:class:`ReplayGuard` refuses one it accepted before (same timestamp, nonce and signed
text) while that timestamp is inside the window.
"""

from __future__ import annotations

import hashlib
import heapq
import time
from collections.abc import Callable
from typing import Final

from ._exceptions import ReplayedResponseError, StaleResponseError

__all__ = ["ReplayGuard", "check_age", "timestamp_seconds"]

# Above this a timestamp is in milliseconds (1e11 s is the year 5138).
_MILLISECONDS_THRESHOLD: Final = 100_000_000_000
DEFAULT_MAX_ENTRIES: Final = 100_000


def timestamp_seconds(timestamp: int) -> float:
    """A response ``timestamp`` (milliseconds, or seconds on some endpoints) in seconds."""
    return timestamp / 1000.0 if abs(timestamp) >= _MILLISECONDS_THRESHOLD else float(timestamp)


def check_age(timestamp: int | None, max_age: float, now: float) -> float:
    """Raise ``StaleResponseError`` unless ``timestamp`` is within ``max_age`` s of ``now``.

    Returns the timestamp in seconds. A response without a timestamp cannot prove its age
    and is refused too.
    """
    if timestamp is None:
        raise StaleResponseError(
            "the signed response carries no timestamp, so its age cannot be checked and it "
            "may be a replay; pass response_max_age=None (max_age=None) to accept it anyway"
        )
    seconds = timestamp_seconds(timestamp)
    offset = now - seconds
    if abs(offset) > max_age:
        when = "old" if offset > 0 else "in the future"
        raise StaleResponseError(
            f"the signed response is {abs(offset):.0f} s {when} by the local clock (more than "
            f"max_age={max_age:g} s): an earlier answer replayed, or the local clock is off. "
            f"Synchronise the clock (NTP); use an https:// base_url so answers cannot be "
            f"replayed; raise response_max_age= only if the clock cannot be fixed"
        )
    return seconds


class ReplayGuard:
    """Refuses stale responses and any signed response accepted before within the window.

    Memory is bounded: an entry is forgotten once its timestamp leaves the window (after
    which staleness refuses it anyway), and at most ``max_entries`` are kept. When the cap
    forces out an entry still inside the window, every response not newer than it is
    refused from then on, so an evicted answer can never be replayed unnoticed.
    """

    def __init__(
        self,
        max_age: float,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not max_age > 0:
            raise ValueError(f"max_age must be a positive number of seconds, got {max_age!r}")
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries!r}")
        self.max_age = float(max_age)
        self.max_entries = max_entries
        self._clock = clock
        self._heap: list[tuple[float, bytes]] = []
        self._seen: set[bytes] = set()
        self._floor = float("-inf")

    def __len__(self) -> int:
        return len(self._seen)

    def check(self, timestamp: int | None, nonce: str | None, signed_text: str) -> None:
        """Accept the response once, or raise ``StaleResponseError``/``ReplayedResponseError``."""
        now = self._clock()
        seconds = check_age(timestamp, self.max_age, now)
        self._expire(now)
        digest = hashlib.blake2b(
            f"{timestamp}\x00{nonce}\x00{signed_text}".encode("utf-8", "surrogatepass"),
            digest_size=16,
        ).digest()
        if digest in self._seen or seconds <= self._floor:
            raise ReplayedResponseError(
                "this signed response was already accepted once (same timestamp, nonce and "
                "content): something between you and Tupu replayed it. Use an https:// "
                "base_url; the request was not retried"
            )
        self._seen.add(digest)
        heapq.heappush(self._heap, (seconds, digest))
        while len(self._seen) > self.max_entries:
            oldest, old_digest = heapq.heappop(self._heap)
            self._seen.discard(old_digest)
            self._floor = max(self._floor, oldest)

    def _expire(self, now: float) -> None:
        cutoff = now - self.max_age
        heap = self._heap
        while heap and heap[0][0] < cutoff:
            _, digest = heapq.heappop(heap)
            self._seen.discard(digest)
