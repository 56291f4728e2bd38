"""Rate limiting: the limiter protocol and the in-process limiters.

- :class:`RateLimiter`: what the client needs from any limiter (a Redis one lives elsewhere).
- :class:`WindowSchedule`: the pure scheduling math (no I/O, no clock of its own), so the
  guarantee is tested on a virtual clock.
- :class:`LocalLimiter`: the limiter for one process, on asyncio and trio (via anyio).
- :class:`UnlimitedLimiter`: no limit at all, for benchmarks that lift it.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Final, Literal, Protocol, runtime_checkable

import anyio
import anyio.lowlevel

from ._constants import MAX_QPS
from ._events import logger
from ._throttle_policy import (
    DEFAULT_MAX_MARGIN,
    DEFAULT_RETRY_AFTER_CAP,
    LimiterBelief,
    ThrottlePolicy,
)

__all__ = [
    "DEFAULT_MARGIN",
    "DEFAULT_THROTTLE_PAUSE",
    "LocalLimiter",
    "PolicyName",
    "RateLimiter",
    "SentHook",
    "UnlimitedLimiter",
    "WindowSchedule",
]

#: Seconds added to the counting window, so that send-side jitter up to this much cannot
#: make the service (which counts at arrival) see more than ``qps`` starts in ``period``.
DEFAULT_MARGIN: Final = 0.015
#: How long everybody pauses after a throttle that carried no usable Retry-After.
DEFAULT_THROTTLE_PAUSE: Final = 1.0
# A grant that wakes up late keeps its ideal slot for pacing (so ~1 ms of timer lateness
# per grant does not erode the rate), but at most this much lateness is forgiven (and never
# more than half a spacing), so a stalled event loop cannot turn into a burst.
_MAX_FORGIVEN_LATENESS: Final = 0.005


PolicyName = Literal["adaptive", "pause-halve"]
"""``"adaptive"``: :mod:`._throttle_policy`. ``"pause-halve"``: the first release's AIMD
(pause 1 s and halve), kept as the baseline for benchmarks."""

SentHook = Callable[[], None]
"""Called (at most once) when the request a permit was for has actually been sent."""


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

    async def acquire(self) -> SentHook | None:
        """Wait until one more request may start now, then take that slot.

        May return a :data:`SentHook`: the caller calls it once the request has been
        written to the network, so the limiter can count the real send time (a send that
        lags its permit must not bunch up with the next ones at the server).
        """
        ...

    async def on_throttle(self, retry_after: float | None = None) -> None:
        """The service throttled us (HTTP 429): adapt (margin, rate, or a capped pause)."""
        ...

    def on_success(self) -> None:
        """A request went through: evidence for a lowered rate to recover."""
        ...

    async def aclose(self) -> None:
        """Release resources (connections for shared backends)."""
        ...


class WindowSchedule:
    """When the next request may start: a sliding-window log plus a pacer, as pure math.

    Guarantee: if every start is recorded with :meth:`record_start` at a time no earlier
    than :meth:`not_before` (and start times never decrease), then no half-open window
    ``[t, t + period + margin)`` holds more than ``floor(qps)`` starts; a start moved
    later by :meth:`record_sent` counts at its later time for every slot granted after.
    The window log (the latest ``floor(qps)`` start times) is what guarantees it; the pacer
    only spreads starts
    at least ``(period + margin) / current_rate`` apart so that they do not come in bursts.

    Throttling here is the first release's AIMD (``LocalLimiter(policy="pause-halve")``;
    the adaptive policy drives :meth:`set_rate`, :meth:`set_margin` and :meth:`pause`
    instead). :meth:`throttle` pauses every start until ``now + retry_after``
    and halves the current rate (never below ``min_rate``); further throttles before the
    pause ends, and for one window after the halving, only extend the pause (they are the
    other requests that were in flight when the first was throttled). :meth:`success`
    adds ``recovery / current_rate`` to the rate, i.e. about ``recovery`` requests per
    period for every period of successful traffic, up to ``qps``; successes during a pause
    do not count.

    Times are plain floats in seconds from any monotonic clock; nothing here reads a clock.
    """

    def __init__(
        self,
        qps: float = MAX_QPS,
        period: float = 1.0,
        *,
        margin: float = DEFAULT_MARGIN,
        min_rate: float = 1.0,
        recovery: float = 1.0,
    ) -> None:
        if not math.isfinite(qps) or qps < 1:
            raise ValueError(
                f"qps must be a finite number >= 1, got {qps!r}: for slower rates raise "
                f"period= (e.g. qps=1, period=10); for no limit use UnlimitedLimiter()"
            )
        if not math.isfinite(period) or period <= 0:
            raise ValueError(f"period must be a positive number of seconds, got {period!r}")
        if not math.isfinite(margin) or margin < 0:
            raise ValueError(f"margin must be >= 0 seconds, got {margin!r}")
        if not math.isfinite(min_rate) or not 0 < min_rate <= qps:
            raise ValueError(f"min_rate must be > 0 and <= qps ({qps!r}), got {min_rate!r}")
        if not math.isfinite(recovery) or recovery < 0:
            raise ValueError(f"recovery must be >= 0 requests per period, got {recovery!r}")
        self._qps = float(qps)
        self._period = float(period)
        self._margin = float(margin)
        self._min_rate = float(min_rate)
        self._recovery = float(recovery)
        self._limit = math.floor(qps)
        self._window = self._period + self._margin
        self._rate = self._qps
        # The ``limit`` latest start times, sorted; a start is its grant time until the
        # request is known to have been sent later (record_sent moves it).
        self._starts: list[float] = []
        self._pace_anchor = -math.inf
        self._paused_until = -math.inf
        self._halving_blocked_until = -math.inf

    @property
    def qps(self) -> float:
        """The configured ceiling, in requests per ``period``."""
        return self._qps

    @property
    def period(self) -> float:
        """The length of the window the ceiling is counted over, in seconds."""
        return self._period

    @property
    def margin(self) -> float:
        """Seconds added to the window to absorb send-side jitter."""
        return self._margin

    @property
    def window(self) -> float:
        """The enforced window, ``period + margin``."""
        return self._window

    @property
    def limit(self) -> int:
        """The most starts in any enforced window: ``floor(qps)``."""
        return self._limit

    @property
    def min_rate(self) -> float:
        """The floor below which throttling does not lower the rate."""
        return self._min_rate

    @property
    def current_rate(self) -> float:
        """The pacing rate in force, in requests per ``period``."""
        return self._rate

    @property
    def spacing(self) -> float:
        """The minimum gap the pacer keeps between consecutive starts, in seconds."""
        return self._window / self._rate

    @property
    def paused_until(self) -> float:
        """No start before this time (``-inf`` when never throttled)."""
        return self._paused_until

    def set_rate(self, rate: float) -> None:
        """Pace to ``rate`` requests per period from now on (clamped to ``[min_rate, qps]``)."""
        self._rate = min(self._qps, max(self._min_rate, rate))

    def set_margin(self, margin: float) -> None:
        """Count over ``period + margin`` from now on (``margin`` >= 0)."""
        self._margin = max(0.0, margin)
        self._window = self._period + self._margin

    def pause(self, until: float) -> None:
        """No start before ``until`` (a later pause already in force stays)."""
        self._paused_until = max(self._paused_until, until)

    def starts_since(self, since: float) -> int:
        """How many logged starts are later than ``since`` (at most ``limit``)."""
        return len(self._starts) - bisect.bisect_right(self._starts, since)

    def not_before(self) -> float:
        """The earliest time the next start may happen, whatever the time is now."""
        earliest = max(self._pace_anchor + self.spacing, self._paused_until)
        if len(self._starts) == self._limit:
            earliest = max(earliest, self._starts[0] + self._window)
        return earliest

    def earliest_start(self, now: float) -> float:
        """The slot a request arriving at ``now`` would get: ``max(now, not_before())``."""
        return max(now, self.not_before())

    def record_start(self, started: float, slot: float | None = None) -> None:
        """Record a start at ``started`` that was scheduled for ``slot`` (default: the same).

        ``started`` goes into the window log (the hard guarantee counts real starts); the
        pacer continues from ``slot``, forgiving a little lateness of the wake-up.
        """
        if slot is None:
            slot = started
        self._log(started)
        forgiven = min(_MAX_FORGIVEN_LATENESS, self.spacing / 2)
        self._pace_anchor = max(slot, started - forgiven)

    def _log(self, started: float) -> None:
        bisect.insort(self._starts, started)
        if len(self._starts) > self._limit:
            del self._starts[0]

    def record_sent(self, started: float, sent: float) -> None:
        """The request that started at ``started`` was actually sent at ``sent``.

        The window log counts the later of the two, so a send that lagged its permit
        (a busy event loop, a slow connection) pushes the following permits back instead
        of arriving at the server bunched up with them.
        """
        if sent <= started:
            return
        i = bisect.bisect_left(self._starts, started)
        if i < len(self._starts) and self._starts[i] == started:
            del self._starts[i]
        elif self._starts and len(self._starts) == self._limit and sent <= self._starts[0]:
            return
        self._log(sent)

    def reserve(self, now: float) -> float:
        """Take the next slot for a request arriving at ``now`` and return its time."""
        slot = self.earliest_start(now)
        self.record_start(slot)
        return slot

    def throttle(self, now: float, retry_after: float | None = None) -> bool:
        """The service throttled a request at ``now``. Returns True if the rate was halved."""
        if retry_after is None or not math.isfinite(retry_after):
            pause = DEFAULT_THROTTLE_PAUSE
        else:
            pause = max(0.0, retry_after)
        self._paused_until = max(self._paused_until, now + pause)
        if now < self._halving_blocked_until:
            return False
        self._rate = max(self._min_rate, self._rate / 2)
        self._halving_blocked_until = max(self._paused_until, now + self._window)
        return True

    def success(self, now: float) -> None:
        """A request succeeded at ``now``: recover the rate additively."""
        if now < self._paused_until:
            return
        self._rate = min(self._qps, self._rate + self._recovery / self._rate)


class LocalLimiter:
    """The rate limiter for one process: a hard sliding-window cap, paced, fair and AIMD.

    Guarantee: across all coroutines sharing the limiter, no more than ``floor(qps)``
    calls to :meth:`acquire` return within ANY window of ``period + margin`` seconds (so
    never more than ``qps`` in any ``period``, even as seen by a server that counts at
    arrival after up to ``margin`` seconds of network jitter). The times counted are
    read from ``clock`` at the moment :meth:`acquire` returns, not planned times, so a
    stalled event loop cannot cause an overrun; and when the caller calls the hook that
    :meth:`acquire` returns once its request is on the wire, the later of the two times
    counts, so a send that lagged its permit delays the next permits instead of reaching
    the server bunched up with them. Every HTTP attempt, retries included, must take one
    permit.

    Smooth: consecutive starts are paced ``(period + margin) / current_rate`` apart, so
    with continuous demand the long-run rate is ``qps / (1 + margin / period)`` per
    period and there are no bursts. Fair: waiters are granted strictly first-come
    first-served; only the waiter at the head of the line sleeps on the clock, the others
    wait for their turn (no polling, no thundering herd). Cancelling a waiter (anyio
    cancel scope, asyncio task cancel, timeout) removes it from the line and passes the
    turn on; a cancelled waiter never takes or blocks a slot.

    Throttling (``policy="adaptive"``, see :mod:`tupu_async._throttle_policy`): a 429
    while our own count is at the ceiling and isolated is network jitter and widens the
    margin (up to ``max_margin``, decaying while clean); persistent 429s, or 429s while
    we are well under the ceiling, are another client's load and cut the rate
    multiplicatively, probing back up CUBIC-style. Neither pauses; an explicit
    Retry-After pauses every start for at most ``retry_after_cap`` seconds.
    ``policy="pause-halve"`` keeps the first release's AIMD (see :class:`WindowSchedule`;
    ``recovery`` applies to it only) for comparison. :meth:`belief` reports the rate,
    margin and throttles by cause.

    Cold start: the first sends count at their real wire time (with no baseline yet,
    all of a send's lag counts); later, lag up to the least recent permit-to-wire delay
    (never more than ``margin``) is treated as constant overhead.

    ``clock`` (default :func:`time.monotonic`) returns seconds; it must advance with the
    clock :func:`anyio.sleep` waits on (a trio ``MockClock``'s ``current_time`` works).
    Use one limiter from one event loop; it holds no resources.

    Why not aiolimiter: ``aiolimiter.AsyncLimiter(50, 1)`` is a leaky bucket that starts
    empty, so it lets about 99 requests start in the first second (measured; a test shows
    the overrun). Configured as a pacer (``AsyncLimiter(1, spacing)``) it keeps spacing but
    reads the event loop clock at wake-up time, so timer lateness accumulates: measured
    46.8 req/s for a 49.3 req/s target. It cannot change its rate or pause without
    touching private attributes, cannot use an injected clock, and does not run on trio;
    the window log would still have to check every grant after it. So this anyio-native
    implementation is used on both backends and aiolimiter adds nothing here.
    """

    def __init__(
        self,
        qps: float = MAX_QPS,
        period: float = 1.0,
        *,
        margin: float = DEFAULT_MARGIN,
        min_rate: float = 1.0,
        recovery: float = 1.0,
        clock: Callable[[], float] | None = None,
        policy: PolicyName = "adaptive",
        max_margin: float = DEFAULT_MAX_MARGIN,
        retry_after_cap: float = DEFAULT_RETRY_AFTER_CAP,
    ) -> None:
        if policy not in ("adaptive", "pause-halve"):
            raise ValueError(f"policy must be 'adaptive' or 'pause-halve', got {policy!r}")
        self._schedule = WindowSchedule(
            qps, period, margin=margin, min_rate=min_rate, recovery=recovery
        )
        self._policy: ThrottlePolicy | None = None
        self._throttle_policy = ThrottlePolicy(
            qps,
            period,
            margin=margin,
            max_margin=max(margin, max_margin),
            min_rate=min_rate,
            retry_after_cap=retry_after_cap,
        )
        if policy == "adaptive":
            self._policy = self._throttle_policy
        self._clock: Callable[[], float] = time.monotonic if clock is None else clock
        # One event per waiter, in arrival order; the first one is the head of the line.
        self._line: deque[anyio.Event] = deque()
        self._send_delays: deque[float] = deque(maxlen=64)

    @property
    def qps(self) -> float:
        """The configured ceiling, in requests per ``period``."""
        return self._schedule.qps

    @property
    def period(self) -> float:
        """The window the ceiling is counted over, in seconds."""
        return self._schedule.period

    @property
    def margin(self) -> float:
        """Seconds added to the window to absorb jitter (widened by jitter 429s)."""
        self._follow_policy(self._clock())
        return self._schedule.margin

    @property
    def current_rate(self) -> float:
        """The pacing rate in force, in requests per ``period``."""
        self._follow_policy(self._clock())
        return self._schedule.current_rate

    @property
    def policy(self) -> PolicyName:
        """Which 429 policy is in force: ``"adaptive"`` or ``"pause-halve"``."""
        return "pause-halve" if self._policy is None else "adaptive"

    def belief(self) -> LimiterBelief:
        """What the limiter believes now: rate, margin, throttles by cause, pause."""
        now = self._clock()
        self._follow_policy(now)
        policy = self._throttle_policy
        return LimiterBelief(
            rate=self._schedule.current_rate,
            margin=self._schedule.margin,
            jitter_throttles=policy.jitter_throttles,
            foreign_throttles=policy.foreign_throttles,
            paused_until=self._schedule.paused_until,
        )

    def _follow_policy(self, now: float) -> None:
        """Bring the schedule's rate and margin to what the adaptive policy says at ``now``."""
        policy = self._policy
        if policy is not None:
            self._schedule.set_rate(policy.rate(now))
            self._schedule.set_margin(policy.margin(now))

    @property
    def waiting(self) -> int:
        """How many callers are waiting in :meth:`acquire` right now."""
        return len(self._line)

    async def acquire(self) -> SentHook:
        """Wait (first come, first served) until one more request may start, and take it.

        Returns a hook to call once the request is actually on the wire: the window log
        then counts that later time (see :meth:`WindowSchedule.record_sent`).
        """
        return await self._acquire(ahead=False)

    async def acquire_next(self) -> SentHook:
        """Like :meth:`acquire`, but ahead of every waiter except the one already at the
        head of the line: for re-sending a throttled request in the next free slot."""
        return await self._acquire(ahead=True)

    async def _acquire(self, *, ahead: bool) -> SentHook:
        await anyio.lowlevel.checkpoint_if_cancelled()
        line = self._line
        if not line:
            now = self._clock()
            self._follow_policy(now)
            if self._schedule.not_before() <= now:
                self._schedule.record_start(now)
                return self._sent_hook(now)
        turn = anyio.Event()
        if ahead and line:
            line.insert(1, turn)
        else:
            line.append(turn)
        try:
            if line[0] is not turn:
                await turn.wait()
            started = await self._wait_for_slot_and_start()
        finally:
            self._leave_line(turn)
        return self._sent_hook(started)

    def _sent_hook(self, started: float) -> SentHook:
        def sent() -> None:
            # Only lag beyond the usual permit-to-wire delay (signing, HTTP framing: the
            # least of the earlier ones, at most the margin) counts: a constant delay
            # shifts every send alike and must not slow the pace down, a lagging one must
            # not bunch up. With no earlier send there is no baseline: all lag counts.
            now = self._clock()
            delay = now - started
            delays = self._send_delays
            usual = min(min(delays), self._schedule.margin) if delays else 0.0
            delays.append(delay)
            if delay > usual:
                self._schedule.record_sent(started, now - usual)

        return sent

    async def _wait_for_slot_and_start(self) -> float:
        """As head of the line: sleep until the slot (re-planned if a throttle moved it)."""
        now = self._clock()
        self._follow_policy(now)
        slot = self._schedule.earliest_start(now)
        while True:
            now = self._clock()
            self._follow_policy(now)
            slot = max(slot, self._schedule.not_before())
            if now >= slot:
                break
            await anyio.sleep(slot - now)
        # No await between reading `now` and returning: this is the start time.
        self._schedule.record_start(now, slot)
        return now

    def _leave_line(self, turn: anyio.Event) -> None:
        if self._line and self._line[0] is turn:
            self._line.popleft()
            if self._line:
                self._line[0].set()
        else:
            self._line.remove(turn)

    async def on_throttle(self, retry_after: float | None = None) -> None:
        """The service throttled us: react as the policy says (see the class docstring)."""
        now = self._clock()
        schedule = self._schedule
        policy = self._policy
        if policy is None:
            cap = self._throttle_policy.retry_after_cap
            capped = None if retry_after is None else min(retry_after, cap)
            schedule.throttle(now, capped)
            logger.debug(
                "limiter (pause-halve): rate %.3g, paused until %+.3fs",
                schedule.current_rate,
                schedule.paused_until - now,
            )
        else:
            own = schedule.starts_since(now - schedule.period)
            decision = policy.on_throttle(now, own, schedule.limit, retry_after)
            schedule.pause(decision.pause_until)
            self._follow_policy(now)
            logger.debug(
                "limiter: 429 from %s (own %d in the last period); rate %.3g%s, margin "
                "%.1f ms, pause %.3fs; throttles: %d jitter, %d foreign",
                decision.cause,
                own,
                decision.rate,
                " (lowered)" if decision.rate_lowered else "",
                decision.margin * 1000,
                max(0.0, decision.pause_until - now),
                policy.jitter_throttles,
                policy.foreign_throttles,
            )
        await anyio.lowlevel.checkpoint()

    def on_success(self) -> None:
        """A request went through: evidence of our share (``pause-halve``: recover additively)."""
        if self._policy is None:
            self._schedule.success(self._clock())
        else:
            self._policy.on_success(self._clock())

    async def aclose(self) -> None:
        """Nothing to release; present for the protocol."""
        await anyio.lowlevel.checkpoint()

    def __repr__(self) -> str:
        return (
            f"<LocalLimiter qps={self.qps:g} period={self.period:g} margin={self.margin:g} "
            f"current_rate={self.current_rate:.3g} policy={self.policy} waiting={self.waiting}>"
        )


class UnlimitedLimiter:
    """A limiter that never waits: ``qps`` is infinite and throttles are ignored.

    Only for benchmarks and tests that lift the limit on purpose; the real service
    rejects traffic over its QPS limit.
    """

    @property
    def qps(self) -> float:
        """Always ``inf``."""
        return math.inf

    @property
    def current_rate(self) -> float:
        """Always ``inf``."""
        return math.inf

    async def acquire(self) -> None:
        """Return at once (after a checkpoint, so a tight loop stays cancellable)."""
        await anyio.lowlevel.checkpoint()

    async def on_throttle(self, retry_after: float | None = None) -> None:
        """Ignored."""
        await anyio.lowlevel.checkpoint()

    def on_success(self) -> None:
        """Ignored."""

    async def aclose(self) -> None:
        """Nothing to release."""
        await anyio.lowlevel.checkpoint()

    def __repr__(self) -> str:
        return "<UnlimitedLimiter>"
