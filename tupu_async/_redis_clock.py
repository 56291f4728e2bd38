"""Mapping the Redis server's clock onto this process's monotonic clock.

Every script reply carries the Redis time it ran at. :class:`RedisClock` keeps the recent
(round trip, offset) samples, where the offset is the local time the reply arrived minus
that Redis time: the true offset plus the return trip, so a Redis instant mapped through
it is never early here. The smallest recent offset is the estimate. A sample that
disagrees with it by more than both round trips means a clock step (a failover to a
server with another clock): the old samples are dropped.
"""

from __future__ import annotations

import collections
import time
from typing import Final

__all__ = ["RedisClock", "monotonic_us"]

#: Replies remembered for the offset estimate and the round-trip figure.
CLOCK_SAMPLES: Final = 32
#: Replies whose round trips give the "recent" round trip (the slowest of them).
RECENT_SAMPLES: Final = 8
#: Slack (µs) on top of the two half round trips before a sample counts as a clock step.
STEP_SLACK_US: Final = 2_000


def monotonic_us() -> int:
    """This process's monotonic clock in integer microseconds."""
    return time.monotonic_ns() // 1000


class RedisClock:
    """Redis time <-> local monotonic time, from the replies seen so far.

    Contract: :meth:`to_local` of a Redis time is never earlier than the local instant
    Redis meant, and later by at most the return trip of the best recent reply; before the
    first :meth:`observe` it raises ``LookupError``.
    """

    def __init__(self) -> None:
        self._samples: collections.deque[tuple[int, int]] = collections.deque(maxlen=CLOCK_SAMPLES)

    @property
    def known(self) -> bool:
        """True once at least one reply has been observed."""
        return bool(self._samples)

    def observe(self, sent_us: int, received_us: int, redis_now_us: int) -> bool:
        """Record one reply; return True if it revealed a clock step (old samples dropped)."""
        rtt = max(0, received_us - sent_us)
        offset = received_us - redis_now_us
        stepped = False
        if self._samples:
            best_offset = self.offset_us
            best_rtt = min(r for r, o in self._samples if o == best_offset)
            if abs(offset - best_offset) > rtt + best_rtt + STEP_SLACK_US:
                self._samples.clear()
                stepped = True
        self._samples.append((rtt, offset))
        return stepped

    @property
    def offset_us(self) -> int:
        """Local minus Redis time plus the shortest recent return trip."""
        if not self._samples:
            raise LookupError("no Redis reply observed yet")
        return min(offset for _, offset in self._samples)

    @property
    def recent_rtt_us(self) -> int:
        """The slowest of the last few round trips (0 before any)."""
        recent = list(self._samples)[-RECENT_SAMPLES:]
        return max((rtt for rtt, _ in recent), default=0)

    @property
    def rtt_spread_us(self) -> int:
        """How much slower the median recent round trip is than the fastest kept one: how
        late a typical reply lands after the instant the mapping assumes (0 before any).
        The median, so one slow outlier (a connection set-up) does not push it up."""
        if not self._samples:
            return 0
        recent = sorted(rtt for rtt, _ in list(self._samples)[-RECENT_SAMPLES:])
        median = recent[(len(recent) - 1) // 2]  # the lower median
        return max(0, median - min(rtt for rtt, _ in self._samples))

    def to_local(self, redis_us: int) -> int:
        """The local monotonic µs of a Redis-clock instant."""
        return redis_us + self.offset_us

    def to_redis(self, local_us: int) -> int:
        """The Redis-clock µs of a local monotonic instant."""
        return local_us - self.offset_us
