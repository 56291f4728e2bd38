"""The pure scheduling math of the local limiter: no I/O and no clock of its own."""

from __future__ import annotations

import bisect
import math
from dataclasses import KW_ONLY, dataclass, field
from typing import Final

from ._checks import check_window
from ._constants import MAX_QPS

__all__ = ["DEFAULT_MARGIN", "DEFAULT_THROTTLE_PAUSE", "WindowSchedule", "throttle_pause"]

#: Seconds added to the counting window, so that send-side jitter up to this much cannot
#: make the service (which counts at arrival) see more than ``qps`` starts in ``period``.
DEFAULT_MARGIN: Final = 0.015
#: How long everybody pauses after a throttle that carried no usable Retry-After.
DEFAULT_THROTTLE_PAUSE: Final = 1.0
# The most wake-up lateness a grant is forgiven when pacing the next one (never more than
# half a spacing); see docs/design-limiters.md.
_MAX_FORGIVEN_LATENESS: Final = 0.005


def throttle_pause(retry_after: float | None, cap: float = math.inf) -> float:
    """How long to pause after a throttle: ``retry_after`` seconds (at least 0, at most
    ``cap``), or :data:`DEFAULT_THROTTLE_PAUSE` when it is missing or not finite."""
    if retry_after is None or not math.isfinite(retry_after):
        return DEFAULT_THROTTLE_PAUSE
    return min(max(0.0, float(retry_after)), cap)


@dataclass(eq=False, repr=False, slots=True)
class WindowSchedule:
    """When the next request may start: a sliding-window log plus pacing, as pure math.

    Guarantee: if every start is recorded with :meth:`record_start` at a time no earlier
    than :meth:`not_before` (and start times never decrease), then no half-open window
    ``[t, t + period + margin)`` holds more than ``floor(qps)`` starts; a start moved
    later by :meth:`record_sent` counts at its later time for every slot granted after.
    Starts are also spread at least :attr:`spacing` apart.

    :meth:`throttle` and :meth:`success` are the ``"pause-halve"`` policy (pause, halve the
    rate, recover ``recovery`` requests per period per period of traffic); the adaptive
    policy drives :meth:`set_rate`, :meth:`set_margin` and :meth:`pause` instead.

    Times are plain floats in seconds from any monotonic clock. The settings are read-only
    after construction; change rate, margin and pause only through the methods.
    """

    qps: float = MAX_QPS
    """The configured ceiling, in requests per ``period``."""
    period: float = 1.0
    """The length of the window the ceiling is counted over, in seconds."""
    _: KW_ONLY
    margin: float = DEFAULT_MARGIN
    """Seconds added to the window to absorb send-side jitter."""
    min_rate: float = 1.0
    """The floor below which throttling does not lower the rate."""
    recovery: float = 1.0
    """Requests per period regained per period of success (``"pause-halve"`` only)."""
    limit: int = field(init=False)
    """The most starts in any enforced window: ``floor(qps)``."""
    window: float = field(init=False)
    """The enforced window, ``period + margin``."""
    current_rate: float = field(init=False)
    """The pacing rate in force, in requests per ``period``."""
    paused_until: float = field(init=False, default=-math.inf)
    """No start before this time (``-inf`` when never throttled)."""
    # The ``limit`` latest start times, sorted; a start is its grant time until the
    # request is known to have been sent later (record_sent moves it).
    _starts: list[float] = field(init=False, default_factory=list)
    _pace_anchor: float = field(init=False, default=-math.inf)
    _halving_blocked_until: float = field(init=False, default=-math.inf)

    def __post_init__(self) -> None:
        check_window(
            self.qps,
            self.period,
            self.margin,
            self.min_rate,
            qps_hint=": for slower rates raise period= (e.g. qps=1, period=10); "
            "for no limit use UnlimitedLimiter()",
        )
        if not math.isfinite(self.recovery) or self.recovery < 0:
            raise ValueError(f"recovery must be >= 0 requests per period, got {self.recovery!r}")
        self.qps = self.current_rate = float(self.qps)
        self.period = float(self.period)
        self.min_rate = float(self.min_rate)
        self.recovery = float(self.recovery)
        self.limit = math.floor(self.qps)
        self.set_margin(self.margin)

    @property
    def spacing(self) -> float:
        """The minimum gap kept between consecutive starts, in seconds."""
        return self.window / self.current_rate

    def set_rate(self, rate: float) -> None:
        """Pace to ``rate`` requests per period from now on (clamped to ``[min_rate, qps]``)."""
        self.current_rate = min(self.qps, max(self.min_rate, rate))

    def set_margin(self, margin: float) -> None:
        """Count over ``period + margin`` from now on (``margin`` >= 0)."""
        self.margin = max(0.0, float(margin))
        self.window = self.period + self.margin

    def pause(self, until: float) -> None:
        """No start before ``until`` (a later pause already in force stays)."""
        self.paused_until = max(self.paused_until, until)

    def starts_since(self, since: float) -> int:
        """How many logged starts are later than ``since`` (at most ``limit``)."""
        return len(self._starts) - bisect.bisect_right(self._starts, since)

    def not_before(self) -> float:
        """The earliest time the next start may happen, whatever the time is now."""
        earliest = max(self._pace_anchor + self.spacing, self.paused_until)
        if len(self._starts) == self.limit:
            earliest = max(earliest, self._starts[0] + self.window)
        return earliest

    def earliest_start(self, now: float) -> float:
        """The slot a request arriving at ``now`` would get: ``max(now, not_before())``."""
        return max(now, self.not_before())

    def record_start(self, started: float, slot: float | None = None) -> None:
        """Record a start at ``started`` that was scheduled for ``slot`` (default: the same).

        ``started`` goes into the window log (the hard guarantee counts real starts); pacing
        continues from ``slot``, forgiving a little lateness of the wake-up.
        """
        if slot is None:
            slot = started
        self._log(started)
        forgiven = min(_MAX_FORGIVEN_LATENESS, self.spacing / 2)
        self._pace_anchor = max(slot, started - forgiven)

    def _log(self, started: float) -> None:
        bisect.insort(self._starts, started)
        if len(self._starts) > self.limit:
            del self._starts[0]

    def record_sent(self, started: float, sent: float) -> None:
        """The request that started at ``started`` was actually sent at ``sent``: the window
        log counts the later of the two, so a lagging send pushes the next permits back."""
        if sent <= started:
            return
        i = bisect.bisect_left(self._starts, started)
        if i < len(self._starts) and self._starts[i] == started:
            del self._starts[i]
        elif self._starts and len(self._starts) == self.limit and sent <= self._starts[0]:
            return
        self._log(sent)

    def reserve(self, now: float) -> float:
        """Take the next slot for a request arriving at ``now`` and return its time."""
        slot = self.earliest_start(now)
        self.record_start(slot)
        return slot

    def throttle(self, now: float, retry_after: float | None = None) -> bool:
        """``"pause-halve"``: the service throttled a request at ``now``; pause every start
        until ``now + retry_after`` (1 s when None) and halve the rate, at most once per
        pause plus one window. Returns True if the rate was halved."""
        self.pause(now + throttle_pause(retry_after))
        if now < self._halving_blocked_until:
            return False
        self.current_rate = max(self.min_rate, self.current_rate / 2)
        self._halving_blocked_until = max(self.paused_until, now + self.window)
        return True

    def success(self, now: float) -> None:
        """``"pause-halve"``: a request succeeded at ``now``; after any pause, recover the
        rate by ``recovery / current_rate`` (up to ``qps``)."""
        if now < self.paused_until:
            return
        self.current_rate = min(self.qps, self.current_rate + self.recovery / self.current_rate)
