"""The Lua script behind :class:`~tupu_async.RedisLimiter`, its arguments and its replies.

The script itself is the package resource ``_redis_script.lua``.

One script, two operations, each one atomic round trip. All times are integer
microseconds on the Redis server's clock (exact in a Lua double up to 2**53).

- ``acquire`` appends up to ``n`` slots to the shared log. Each slot is
  max(earliest, last slot + spacing, the ``limit``-th latest slot + window, pause end),
  where earliest is ``now + lead`` (the caller cannot use a slot before the reply reaches
  it). The first slot is always taken; further ones only while they fall within
  ``horizon`` of now, so a process never books far ahead of its own need.
- ``throttle`` records a 429. ``'adaptive'``: the decision of
  :class:`~tupu_async._throttle_policy.ThrottlePolicy`, on state shared by every process
  (a pause only for an explicit Retry-After). ``'pause-halve'``: extend the shared pause
  and halve the shared rate, at most once per pause window; the rate recovers additively
  after the pause. Either way the rate is computed from the stored state, so successes
  cost no call.

Both operations first repair the state: a pause ending more than ``max_pause`` after now,
or log entries more than ``max_ahead`` after the pause end (a clock step on failover),
are pulled back to those bounds. The log holds real starts no later than their stored
times, so pulling an entry back to a bound that is still in the future only ever delays
the next slot: it stays fail-closed. ``acquire`` with ``known=1`` on a missing state key
means Redis lost the state (a restart without persistence) while slots handed out before
may still be in use: it sets a pause of ``lost_pause`` before handing out any new slot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

__all__ = ["SCRIPT", "Reservation", "ScriptSettings", "ThrottleOutcome"]

#: Log entries further than this many windows after now (or the pause end) are a clock
#: step and are pulled back; legitimate bookings are at most ``lease`` plus one slot per
#: process ahead.
MAX_AHEAD_WINDOWS: Final = 10

#: The script's source, shipped as the package resource ``_redis_script.lua``.
SCRIPT: Final = resources.files("tupu_async").joinpath("_redis_script.lua").read_text("utf-8")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class ScriptSettings:
    """The fixed arguments of every call (times in µs, except ``keep_ms``)."""

    limit: int
    window_us: int
    qps: float
    min_rate: float
    recovery: float
    keep_ms: int
    max_pause_us: int
    max_ahead_us: int
    lost_pause_us: int
    reaction: str  # 'adaptive' or 'pause-halve'
    base_margin_us: int
    max_margin_us: int

    @classmethod
    def for_limiter(
        cls,
        *,
        qps: float,
        period: float,
        margin: float,
        max_margin: float,
        min_rate: float,
        recovery_seconds: float,
        max_retry_after: float,
        lease_us: int,
        reaction: str,
    ) -> ScriptSettings:
        """The settings for a limiter's arguments (seconds, as validated by it)."""
        window = float(period) + float(margin)
        window_us = math.ceil(window * 1_000_000)
        return cls(
            limit=math.floor(qps),
            window_us=window_us,
            qps=float(qps),
            min_rate=float(min_rate),
            recovery=qps / recovery_seconds,
            keep_ms=math.ceil((window + recovery_seconds + 1.0) * 1000),
            max_pause_us=math.ceil(max_retry_after * 1_000_000),
            max_ahead_us=MAX_AHEAD_WINDOWS * window_us + lease_us,
            lost_pause_us=window_us + lease_us,
            reaction=reaction,
            base_margin_us=round(margin * 1_000_000),
            max_margin_us=round(max_margin * 1_000_000),
        )

    @property
    def period_us(self) -> int:
        return self.window_us - self.base_margin_us

    def common(self, op: str, now_us: int | None) -> list[str | int]:
        return [
            op,
            "" if now_us is None else str(now_us),
            self.limit,
            self.window_us,
            repr(self.qps),
            repr(self.min_rate),
            repr(self.recovery),
            self.keep_ms,
            self.max_pause_us,
            self.max_ahead_us,
            self.reaction,
            self.base_margin_us,
            self.max_margin_us,
            self.period_us,
        ]

    def acquire_args(
        self, n: int, lead_us: int, horizon_us: int, *, known: bool, now_us: int | None = None
    ) -> list[str | int]:
        """Arguments to reserve up to ``n`` slots (at least one)."""
        extra: list[str | int] = [n, lead_us, horizon_us, "1" if known else "0"]
        return [*self.common("acquire", now_us), *extra, self.lost_pause_us]

    def throttle_args(
        self, pause_us: int, retry_after_us: int, *, now_us: int | None = None
    ) -> list[str | int]:
        """Arguments to record a 429: 'pause-halve' pauses ``pause_us``; 'adaptive' pauses
        only for an explicit Retry-After (``retry_after_us`` >= 0; -1 when none)."""
        return [*self.common("throttle", now_us), pause_us, retry_after_us]


@dataclass(frozen=True)
class Reservation:
    """Slots taken in one call (Redis µs, ascending), the Redis time it ran at, and the
    shared belief then: rate, window margin (µs), throttles by cause."""

    now_us: int
    rate: float
    state_lost: bool
    clamped: bool
    margin_us: float
    jitter_throttles: int
    foreign_throttles: int
    slots_us: tuple[int, ...]

    @classmethod
    def parse(cls, reply: Any) -> Reservation:
        return cls(
            int(reply[0]),
            float(_text(reply[1])),
            _text(reply[2]) == "1",
            _text(reply[3]) == "1",
            float(_text(reply[4])),
            int(reply[5]),
            int(reply[6]),
            tuple(int(slot) for slot in reply[7:]),
        )


@dataclass(frozen=True)
class ThrottleOutcome:
    """What a throttle did to the shared state (Redis µs). ``halved`` is True when the
    rate was lowered; ``cause`` is 'jitter' or 'foreign' ('halve' for 'pause-halve')."""

    pause_until_us: int
    now_us: int
    rate: float
    halved: bool
    clamped: bool
    cause: str
    margin_us: float
    jitter_throttles: int
    foreign_throttles: int

    @classmethod
    def parse(cls, reply: Any) -> ThrottleOutcome:
        return cls(
            int(reply[0]),
            int(reply[1]),
            float(_text(reply[2])),
            _text(reply[3]) == "1",
            _text(reply[4]) == "1",
            _text(reply[5]),
            float(_text(reply[6])),
            int(reply[7]),
            int(reply[8]),
        )
