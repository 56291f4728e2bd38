"""The 429 policy for a known ceiling: pure decisions, no I/O, no clock of its own.

:class:`ThrottlePolicy` classifies each HTTP 429 as **jitter** (isolated, while our own
count is at or near the limit: widen the window margin) or **foreign** (persistent, or
while we are well under the limit: cut the rate, then probe back up CUBIC-style).
Neither pauses; only an explicit ``Retry-After`` does, capped at ``retry_after_cap``.
Every method takes ``now`` (seconds on any monotonic clock), so the same policy runs on a
real, a virtual or a shared clock (the Redis limiter). Why: ``docs/design-limiters.md``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Final, Literal

from ._checks import check_max_margin, check_seconds, check_window

__all__ = [
    "DEFAULT_MAX_MARGIN",
    "DEFAULT_RETRY_AFTER_CAP",
    "FOREIGN",
    "JITTER",
    "LimiterBelief",
    "ThrottleCause",
    "ThrottleDecision",
    "ThrottlePolicy",
]

ThrottleCause = Literal["jitter", "foreign"]
JITTER: Final[ThrottleCause] = "jitter"
FOREIGN: Final[ThrottleCause] = "foreign"

#: The longest pause an explicit Retry-After imposes on the limiter, in seconds.
DEFAULT_RETRY_AFTER_CAP: Final = 5.0
#: The widest window margin jitter evidence can push the limiter to, in seconds.
DEFAULT_MAX_MARGIN: Final = 0.2
# Multiplicative decrease and the CUBIC constant, as in botocore's adaptive mode.
_BETA: Final = 0.7
_CUBIC_C: Final = 0.4
# A throttle is not isolated when this many happened within ``_PERSIST_SECONDS``.
_PERSIST_COUNT: Final = 3
_PERSIST_SECONDS: Final = 3.0
# Our own count below this fraction of the limit: the budget went to someone else.
_OWN_SHARE_FOR_JITTER: Final = 0.9
# Each jitter throttle widens the margin to ``margin * _WIDEN + _WIDEN_STEP``.
_WIDEN: Final = 1.5
_WIDEN_STEP: Final = 0.005
# The widened part of the margin halves after this many clean seconds.
_MARGIN_HALF_LIFE: Final = 60.0


@dataclass(frozen=True)
class ThrottleDecision:
    """What one 429 changed: its cause, the pause (``-inf``: none), rate and margin now."""

    cause: ThrottleCause
    pause_until: float
    rate: float
    margin: float
    rate_lowered: bool


@dataclass(frozen=True)
class LimiterBelief:
    """What a limiter currently believes about the service's budget."""

    rate: float
    """Requests per period it paces to now (the ceiling when nothing was lost)."""
    margin: float
    """Seconds added to the counting window to absorb network jitter."""
    jitter_throttles: int
    """429s classified as our own requests bunched by the network."""
    foreign_throttles: int
    """429s classified as capacity spent by another client."""
    paused_until: float
    """No start before this time (``-inf`` when not paused)."""


class ThrottlePolicy:
    """Rate and margin for a ceiling of ``qps`` per ``period``, from the 429s seen.

    Contracts: :meth:`rate` stays within ``[min_rate, qps]``; :meth:`margin` within
    ``[margin, max_margin]`` and, once widened, decays toward the base margin with a
    60 s half-life of clean time; a cluster of throttles within one window of a rate cut
    never cuts again; a pause only comes from an explicit Retry-After, at most
    ``retry_after_cap`` long.
    """

    def __init__(
        self,
        qps: float,
        period: float = 1.0,
        *,
        margin: float,
        max_margin: float = DEFAULT_MAX_MARGIN,
        min_rate: float = 1.0,
        retry_after_cap: float = DEFAULT_RETRY_AFTER_CAP,
    ) -> None:
        check_window(qps, period, margin, min_rate)
        check_max_margin(margin, max_margin)
        check_seconds("retry_after_cap", retry_after_cap)
        self._qps = float(qps)
        self._period = float(period)
        self._base_margin = float(margin)
        self._max_margin = float(max_margin)
        self._min_rate = float(min_rate)
        self._retry_after_cap = float(retry_after_cap)
        self._widened = 0.0  # margin above the base, as of ``_widened_at``
        self._widened_at = -math.inf
        self._w_max = self._qps  # the rate that was throttled last (CUBIC's W_max)
        self._cut_at = -math.inf
        self._cut_rate = self._qps
        self._no_cut_until = -math.inf
        self._paused_until = -math.inf
        self._recent: deque[float] = deque()
        self._successes: deque[float] = deque()
        self._first_success = math.inf
        self.jitter_throttles = 0
        self.foreign_throttles = 0

    @property
    def qps(self) -> float:
        """The ceiling, in requests per period."""
        return self._qps

    @property
    def retry_after_cap(self) -> float:
        """The longest pause a Retry-After imposes, in seconds."""
        return self._retry_after_cap

    @property
    def paused_until(self) -> float:
        """No start before this time (``-inf`` when never paused)."""
        return self._paused_until

    def margin(self, now: float) -> float:
        """The window margin in force at ``now``, in seconds."""
        if self._widened <= 0.0:
            return self._base_margin
        clean = max(0.0, now - self._widened_at)
        return self._base_margin + self._widened * math.pow(0.5, clean / _MARGIN_HALF_LIFE)

    def rate(self, now: float) -> float:
        """The pacing rate in force at ``now``, in requests per period.

        After a cut at ``t0`` to ``beta * W_max``: ``W_max + C * (t - t0 - K) ** 3`` with
        ``K = cbrt((W_max - cut) / C)``, time in periods, never below the cut nor above
        ``qps``. ``W_max`` is the rate in force at the cut, or what the service accepted
        from us in the period before it when that is less (:meth:`on_success`), so the
        curve is flat around the capacity actually left to us.
        """
        if self._cut_at == -math.inf:
            return self._qps
        elapsed = max(0.0, (now - self._cut_at) / self._period)
        k = math.pow(max(0.0, self._w_max - self._cut_rate) / _CUBIC_C, 1 / 3)
        rate = self._w_max + _CUBIC_C * (elapsed - k) ** 3
        return min(self._qps, max(self._min_rate, self._cut_rate, rate))

    def belief(self, now: float) -> LimiterBelief:
        """A snapshot of the rate, margin, throttle counts and pause at ``now``."""
        return LimiterBelief(
            rate=self.rate(now),
            margin=self.margin(now),
            jitter_throttles=self.jitter_throttles,
            foreign_throttles=self.foreign_throttles,
            paused_until=self._paused_until,
        )

    def on_success(self, now: float) -> None:
        """A request of ours was accepted at ``now`` (evidence of our share of the budget)."""
        successes = self._successes
        if not successes and self._first_success == math.inf:
            self._first_success = now
        successes.append(now)
        horizon = now - self._period
        while successes[0] <= horizon:
            successes.popleft()

    def accepted_in_period(self, now: float) -> int | None:
        """How many of our requests were accepted in ``(now - period, now]``; None before
        a full period of successes has been seen (no evidence yet)."""
        if now - self._first_success < self._period:
            return None
        horizon = now - self._period
        return sum(1 for t in self._successes if t > horizon)

    def classify(self, now: float, own_in_window: int, limit: int) -> ThrottleCause:
        """Why a 429 at ``now`` happened, given our own starts in the trailing window."""
        if now < self._no_cut_until:
            return FOREIGN  # the rest of a cluster that already cut the rate
        if own_in_window < _OWN_SHARE_FOR_JITTER * limit:
            return FOREIGN
        horizon = now - _PERSIST_SECONDS
        recent = sum(1 for t in self._recent if t > horizon)
        return FOREIGN if recent + 1 >= _PERSIST_COUNT else JITTER

    def on_throttle(
        self, now: float, own_in_window: int, limit: int, retry_after: float | None = None
    ) -> ThrottleDecision:
        """Record a 429 at ``now`` and decide the reaction (see the class docstring)."""
        cause = self.classify(now, own_in_window, limit)
        self._recent.append(now)
        while self._recent and self._recent[0] <= now - _PERSIST_SECONDS:
            self._recent.popleft()
        lowered = False
        if cause == JITTER:
            self.jitter_throttles += 1
            margin = self.margin(now)
            wider = min(self._max_margin, margin * _WIDEN + _WIDEN_STEP)
            self._widened = wider - self._base_margin
            self._widened_at = now
        else:
            self.foreign_throttles += 1
            if now >= self._no_cut_until:
                current = self.rate(now)
                accepted = self.accepted_in_period(now)
                if accepted:  # what the service let through is the capacity left to us
                    current = min(current, max(self._min_rate, float(accepted)))
                self._w_max = current
                self._cut_rate = max(self._min_rate, current * _BETA)
                self._cut_at = now
                self._no_cut_until = now + self._period + self.margin(now)
                lowered = True
        if retry_after is not None and math.isfinite(retry_after) and retry_after > 0:
            pause = min(retry_after, self._retry_after_cap)
            self._paused_until = max(self._paused_until, now + pause)
        return ThrottleDecision(
            cause=cause,
            pause_until=self._paused_until,
            rate=self.rate(now),
            margin=self.margin(now),
            rate_lowered=lowered,
        )
