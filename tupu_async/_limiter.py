"""The limiter protocol and the in-process limiters.

- :class:`RateLimiter`: what the client needs from any limiter (the Redis one is in
  :mod:`._redis_limiter`).
- :class:`LocalLimiter`: the limiter for one process, on asyncio and trio (via anyio); its
  scheduling math is :class:`~._window_schedule.WindowSchedule`.
- :class:`UnlimitedLimiter`: no limit at all, for benchmarks that lift it.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import Literal, Protocol, get_args, runtime_checkable

import anyio
import anyio.lowlevel

from ._checks import check_choice
from ._constants import MAX_QPS
from ._logging import logger
from ._throttle_policy import (
    DEFAULT_MAX_MARGIN,
    DEFAULT_RETRY_AFTER_CAP,
    LimiterBelief,
    ThrottlePolicy,
)
from ._window_schedule import DEFAULT_MARGIN, WindowSchedule

__all__ = [
    "LocalLimiter",
    "PolicyName",
    "RateLimiter",
    "SentHook",
    "UnlimitedLimiter",
]

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


class LocalLimiter:
    """The rate limiter for one process: at most ``qps`` request starts per ``period``.

    Pass it as ``AsyncTupuClient(limiter=...)``, or take one permit with :meth:`acquire`
    for every HTTP attempt (retries included) and call the hook it returns once the
    request is on the wire. Use it from one event loop (asyncio or trio); it holds no
    resources.

    Guarantee: across all tasks sharing it, no more than ``floor(qps)`` calls to
    :meth:`acquire` return within any window of ``period + margin`` seconds, counted at the
    times they really return, or at the later send time a hook reports. Starts are paced
    ``(period + margin) / current_rate`` apart; waiters are served first come, first
    served, and a cancelled waiter takes no slot.

    ``margin`` (seconds) absorbs network jitter. ``policy="adaptive"`` reacts to 429s as
    :class:`~._throttle_policy.ThrottlePolicy` says, within ``min_rate``, ``max_margin``
    and ``retry_after_cap``; ``"pause-halve"`` is the first release's reaction (see
    :class:`~._window_schedule.WindowSchedule`; ``recovery`` applies to it only).
    ``clock`` (default :func:`time.monotonic`) must advance with the clock
    :func:`anyio.sleep` waits on.
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
        check_choice("policy", policy, get_args(PolicyName))
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
        return self.belief().margin

    @property
    def current_rate(self) -> float:
        """The pacing rate in force, in requests per ``period``."""
        return self.belief().rate

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
        then counts that later time (see :meth:`~._window_schedule.WindowSchedule.record_sent`).
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
            # Only lag beyond the usual permit-to-wire delay (the least of the earlier
            # ones, at most the margin) counts; with no earlier send, all lag counts.
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
        """The service throttled us: react as ``policy`` says."""
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
        """Always ``inf`` (as is ``current_rate``)."""
        return math.inf

    current_rate = qps

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
