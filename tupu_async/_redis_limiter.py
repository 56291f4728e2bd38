"""The Redis-backed rate limiter: one QPS budget shared by every process and host.

Holds :class:`RedisLimiter` (the ``[redis]`` extra, asyncio only): the booking of slots
and the reaction to throttles. The Lua script lives in :mod:`._redis_script`, the
Redis-to-local clock mapping in :mod:`._redis_clock`, the client and its errors in
:mod:`._redis_connection`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, get_args

from ._checks import check_choice, check_max_margin, check_seconds, check_window
from ._constants import DEFAULT_TIMEOUT, MAX_QPS
from ._limiter import LocalLimiter, PolicyName
from ._logging import logger
from ._redis_clock import RedisClock, monotonic_us
from ._redis_connection import (
    Outage,
    connect,
    describe_error,
    fallback_limiter,
    redacted_url,
    redis_errors,
    refused_error,
    require_asyncio,
)
from ._redis_script import SCRIPT, Reservation, ScriptSettings, ThrottleOutcome
from ._throttle_policy import DEFAULT_MAX_MARGIN, DEFAULT_RETRY_AFTER_CAP, LimiterBelief
from ._window_schedule import throttle_pause

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["DEFAULT_LEASE", "DEFAULT_SHARED_MARGIN", "RedisLimiter"]

#: The window margin for a shared budget: requests of several processes reach the service
#: with independent send delays that a shared limiter cannot see.
DEFAULT_SHARED_MARGIN: Final = 0.025
#: How far ahead of now (seconds) a process may book slots for callers already waiting;
#: it must exceed a few round trips to Redis.
DEFAULT_LEASE: Final = 0.25
#: One Redis call slower than this (seconds) counts as Redis being unavailable.
DEFAULT_REDIS_TIMEOUT: Final = 1.0
#: With ``on_unavailable="local"``, how often (seconds) a background probe tries Redis.
RECONNECT_INTERVAL: Final = 5.0
#: A caller that wakes up later than this fraction of ``margin`` after its slot (an event
#: loop stall) does not start on it: it takes a new slot (at most MAX_LATE_RETRIES times).
LATE_FRACTION_OF_MARGIN: Final = 0.5
MAX_LATE_RETRIES: Final = 3
#: Backoff between reservation attempts while Redis is unavailable (seconds).
OUTAGE_BACKOFF_FIRST: Final = 0.05
OUTAGE_BACKOFF_MAX: Final = 0.5
#: The longest pause a Retry-After can cause by default (the local limiter's cap).
MAX_PAUSE: Final = DEFAULT_RETRY_AFTER_CAP


@dataclass(frozen=True, slots=True)
class _Slot:
    """One booked start time and the time it was booked (both Redis µs)."""

    slot_us: int
    reserved_us: int


class RedisLimiter:
    """A QPS budget shared through Redis by every process and host that uses the same key.

    ``key`` names the budget, one per Tupu secret id (e.g. ``key=f"tupu:{secret_id}"``);
    pass the limiter as ``AsyncTupuClient(limiter=...)``. The keys ``{key}:slots`` and
    ``{key}:state`` are used (hash-tagged, for Redis Cluster) and expire when idle.

    Guarantee: across ALL processes using the same Redis and ``key`` (with the same ``qps``,
    ``period`` and ``margin``), no more than ``floor(qps)`` request starts fall in any window
    of ``period + margin`` seconds, on the Redis server's clock; starts are paced
    ``(period + margin) / current_rate`` apart. Callers of one process are served first
    come, first served. A booked slot that goes unused stays counted: the budget can only
    go unused, never be exceeded.

    ``reaction`` is the 429 policy, run by the script on shared state: ``"adaptive"`` (as
    :class:`~tupu_async.LocalLimiter`'s, within ``min_rate``, ``max_margin`` and
    ``max_retry_after``) or ``"pause-halve"`` (recovering over ``recovery_seconds``).
    ``lease`` bounds how far ahead a process books. Redis unavailable for ``redis_timeout``:
    with ``on_unavailable="fail"`` callers wait, and get
    :class:`~tupu_async.TransportError` after ``outage_timeout``; with ``"local"`` the
    limiter warns and limits each process to ``qps / expected_workers`` until Redis is
    back. asyncio only. A ``client`` you pass is used as is and not closed by
    :meth:`aclose`. See ``docs/redis-limiter.md``.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        key: str,
        qps: float = MAX_QPS,
        period: float = 1.0,
        margin: float = DEFAULT_SHARED_MARGIN,
        on_unavailable: Literal["fail", "local"] = "fail",
        expected_workers: int = 1,
        min_rate: float = 1.0,
        recovery_seconds: float = 10.0,
        lease: float = DEFAULT_LEASE,
        outage_timeout: float = DEFAULT_TIMEOUT,
        redis_timeout: float = DEFAULT_REDIS_TIMEOUT,
        max_retry_after: float = DEFAULT_RETRY_AFTER_CAP,
        reaction: PolicyName = "adaptive",
        max_margin: float = DEFAULT_MAX_MARGIN,
        client: Redis | None = None,  # type: ignore[type-arg, unused-ignore]
    ) -> None:
        if not isinstance(key, str) or not key:
            raise ValueError("key must be a non-empty string, e.g. key=f'tupu:{secret_id}'")
        check_window(
            qps,
            period,
            margin,
            min_rate,
            qps_hint="; for fewer than one request per period raise period instead "
            "(qps=1, period=2.0 is 0.5 requests/s)",
        )
        check_choice("on_unavailable", on_unavailable, ("fail", "local"))
        if isinstance(expected_workers, bool) or not isinstance(expected_workers, int):
            raise ValueError(f"expected_workers must be an int >= 1, got {expected_workers!r}")
        if expected_workers < 1:
            raise ValueError(f"expected_workers must be >= 1, got {expected_workers!r}")
        if not 0.0 < recovery_seconds < math.inf:
            raise ValueError(f"recovery_seconds must be > 0, got {recovery_seconds!r}")
        check_seconds("lease", lease)
        check_seconds("outage_timeout", outage_timeout)
        check_seconds("redis_timeout", redis_timeout)
        check_seconds("max_retry_after", max_retry_after)
        if redis_timeout == 0:
            raise ValueError("redis_timeout must be > 0 seconds, e.g. redis_timeout=1.0")
        check_choice("reaction", reaction, get_args(PolicyName))
        check_max_margin(margin, max_margin)

        self._url = url
        self._qps = float(qps)
        self._period = float(period)
        self._margin = float(margin)
        self._on_unavailable = on_unavailable
        self._expected_workers = expected_workers
        self._min_rate = float(min_rate)
        self._lease_us = math.ceil(lease * 1_000_000)
        self._outage_timeout = float(outage_timeout)
        self._redis_timeout = float(redis_timeout)
        self._max_retry_after = float(max_retry_after)
        self._settings = ScriptSettings.for_limiter(
            qps=qps,
            period=period,
            margin=margin,
            max_margin=max_margin,
            min_rate=min_rate,
            recovery_seconds=recovery_seconds,
            max_retry_after=max_retry_after,
            lease_us=self._lease_us,
            reaction=reaction,
        )
        self._limit = self._settings.limit
        self._window_us = self._settings.window_us
        self._keep_ms = self._settings.keep_ms
        self._reaction = reaction
        self._key = key
        self._keys = [f"{{{key}}}:slots", f"{{{key}}}:state"]

        self._refused_errors, self._unavailable_errors = redis_errors()
        self._owns_client = client is None
        if client is None:
            client = connect(url, self._redis_timeout)
        self._client: Any = client
        self._script: Any = self._client.register_script(SCRIPT)

        self._script_sent = False
        self._current_rate = self._qps
        self._shared_margin = self._margin
        self._throttles = (0, 0)  # shared counts: (jitter, foreign)
        self._pause_until_us = 0  # the latest pause this process knows of, Redis clock
        self._clock = RedisClock()
        self._booked: collections.deque[_Slot] = collections.deque()
        self._wanting = 0  # callers in acquire that have no slot to start on yet
        self._line: asyncio.Lock | None = None
        self._refill: asyncio.Task[None] | None = None
        self._last_reply = -math.inf  # local monotonic seconds
        self._outage = Outage(url, self._outage_timeout)
        self._fallback: LocalLimiter | None = None
        self._fallback_rate_scale = 1.0
        self._probe: asyncio.Task[None] | None = None
        self._reconnect_interval = RECONNECT_INTERVAL
        self._late_tolerance_us = max(self._margin * LATE_FRACTION_OF_MARGIN * 1e6, 1000.0)

    def __repr__(self) -> str:
        return (
            f"RedisLimiter({redacted_url(self._url)!r}, key={self._key!r}, "
            f"qps={self._qps}, period={self._period}, on_unavailable={self._on_unavailable!r})"
        )

    @property
    def qps(self) -> float:
        """The configured ceiling (requests per period), shared by everyone on the key."""
        return self._qps

    @property
    def current_rate(self) -> float:
        """The shared rate as of this process's last booking (the local one in fallback)."""
        if self._fallback is not None:
            return self._fallback.current_rate * self._fallback_rate_scale
        return self._current_rate

    def belief(self) -> LimiterBelief:
        """The shared rate, window margin and throttles by cause as of this process's
        last booking or throttle; ``paused_until`` on the local monotonic clock."""
        paused = -math.inf
        if self._pause_until_us and self._clock.known:
            paused = self._clock.to_local(self._pause_until_us) / 1_000_000
        return LimiterBelief(
            rate=self.current_rate,
            margin=self._shared_margin,
            jitter_throttles=self._throttles[0],
            foreign_throttles=self._throttles[1],
            paused_until=paused,
        )

    def _note_shared(self, reply: Reservation | ThrottleOutcome) -> None:
        """Keep the shared rate, margin and throttle counts a script reply carried."""
        self._current_rate = reply.rate
        self._shared_margin = reply.margin_us / 1_000_000
        self._throttles = (reply.jitter_throttles, reply.foreign_throttles)

    @property
    def using_fallback(self) -> bool:
        """True while Redis is unreachable and the local fallback limits this process."""
        return self._fallback is not None

    async def acquire(self) -> None:
        """Wait (first come, first served) until one more request may start, and take it."""
        await self._take()

    async def on_throttle(self, retry_after: float | None = None) -> None:
        """The service throttled us (HTTP 429): react for every process on the key.

        Never raises for Redis trouble: if Redis cannot record the throttle, this process
        pauses on its own.
        """
        require_asyncio()
        pause = throttle_pause(retry_after, self._max_retry_after)
        if self._fallback is not None:
            await self._fallback.on_throttle(pause)
            return
        try:
            outcome = await self._throttle(retry_after)
        except self._refused_errors as exc:
            raise refused_error(self._url, self._key, exc) from exc
        except self._unavailable_errors as exc:
            logger.warning(
                "tupu_async: could not share a throttle through Redis at %s (%s); "
                "pausing this process only",
                redacted_url(self._url),
                describe_error(exc),
            )
            if self._clock.known and (self._reaction == "pause-halve" or retry_after):
                local_end = monotonic_us() + math.ceil(pause * 1_000_000)
                self._pause(self._clock.to_redis(local_end))
            return
        self._note_shared(outcome)
        self._pause(outcome.pause_until_us)
        logger.log(
            logging.INFO if outcome.halved else logging.DEBUG,
            "tupu_async: throttled (%s); shared rate for %s %.2f per %.3g s, margin %.1f ms",
            outcome.cause,
            self._key,
            outcome.rate,
            self._period,
            outcome.margin_us / 1000,
        )

    def on_success(self) -> None:
        """No network call: the shared rate recovers with time, computed by the script."""
        if self._fallback is not None:
            self._fallback.on_success()

    async def aclose(self) -> None:
        """Stop background bookings and probes; close the connections unless passed in."""
        for task in (self._refill, self._probe):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._refill = self._probe = None
        if self._owns_client:
            await self._client.aclose()

    # -- taking a slot ---------------------------------------------------------------------

    async def _take(self) -> _Slot | None:
        """Acquire; return the slot started on, or None when the local fallback served."""
        require_asyncio()
        if self._line is None:
            self._line = asyncio.Lock()  # FIFO; created here, inside the running loop
        self._wanting += 1
        try:
            async with self._line:
                return await self._start_as_head()
        finally:
            self._wanting -= 1

    async def _start_as_head(self) -> _Slot | None:
        """As head of the line: take the next booked slot, sleep until it, start on it."""
        late_retries = 0
        while True:
            if self._fallback is not None:
                await self._fallback.acquire()
                return None
            if not self._booked:
                await self._book_now()
                continue
            slot = self._booked.popleft()
            self._top_up(heads_slot_taken=True)
            delay_us = self._clock.to_local(slot.slot_us) - monotonic_us()
            if delay_us > 0:
                await asyncio.sleep(delay_us / 1_000_000)
            if slot.slot_us < self._pause_until_us:
                continue  # a throttle since it was booked: it falls inside the pause
            late_us = monotonic_us() - self._clock.to_local(slot.slot_us)
            if late_us > self._late_tolerance_us and late_retries < MAX_LATE_RETRIES:
                late_retries += 1
                logger.debug(
                    "tupu_async: woke %.1f ms after the slot; taking a new one", late_us / 1000
                )
                self._drop_late()
                continue
            return slot

    def _drop_late(self) -> None:
        """Forget booked slots that are already too late to start on (they stay counted)."""
        now = monotonic_us()
        while self._booked and (
            now - self._clock.to_local(self._booked[0].slot_us) > self._late_tolerance_us
        ):
            self._booked.popleft()

    def _pause(self, pause_until_us: int) -> None:
        """Pause known until ``pause_until_us`` (Redis clock): drop booked slots inside it."""
        self._pause_until_us = max(self._pause_until_us, pause_until_us)
        kept = [slot for slot in self._booked if slot.slot_us >= self._pause_until_us]
        self._booked = collections.deque(kept)

    # -- booking ---------------------------------------------------------------------------

    def _top_up(self, *, heads_slot_taken: bool) -> None:
        """Book more in the background if callers are waiting beyond what is booked and
        the last booked slot is less than ``lease`` ahead."""
        if self._refill is not None or self._fallback is not None:
            return
        need = self._wanting - (1 if heads_slot_taken else 0) - len(self._booked)
        if need <= 0:
            return
        if self._booked:
            last = self._clock.to_local(self._booked[-1].slot_us)
            if last >= monotonic_us() + self._lease_us:
                return
        self._start_refill(need)

    async def _book_now(self) -> None:
        """Wait for a booking (starting one if none is under way); raise its error."""
        if self._refill is None:
            self._start_refill(self._wanting)
        assert self._refill is not None
        await asyncio.shield(self._refill)

    def _start_refill(self, need: int) -> None:
        task = asyncio.get_running_loop().create_task(self._book(max(1, min(need, self._limit))))
        self._refill = task

        def finished(done: asyncio.Task[None]) -> None:
            if self._refill is done:
                self._refill = None
            if not done.cancelled():
                done.exception()  # retrieved here; the head awaiting it re-raises it

        task.add_done_callback(finished)

    async def _book(self, n: int) -> None:
        """Book up to ``n`` slots, waiting out a Redis outage (or falling back)."""
        backoff = OUTAGE_BACKOFF_FIRST
        while True:
            if self._fallback is not None:
                return
            try:
                sent = monotonic_us()
                reservation = await self._reserve(n)
            except self._refused_errors as exc:
                raise refused_error(self._url, self._key, exc) from exc
            except self._unavailable_errors as exc:
                if self._on_unavailable == "local":
                    self._switch_to_fallback(exc)
                    return
                await self._outage.wait_out(exc, backoff)
                backoff = min(2 * backoff, OUTAGE_BACKOFF_MAX)
                continue
            self._accept(reservation, sent, monotonic_us())
            return

    def _accept(self, reservation: Reservation, sent_us: int, received_us: int) -> None:
        self._outage.over()
        self._last_reply = time.monotonic()
        if self._clock.observe(sent_us, received_us, reservation.now_us):
            logger.warning("tupu_async: the Redis clock stepped; dropping booked slots")
            self._booked.clear()
        if reservation.clamped:
            logger.warning(
                "tupu_async: shared limiter state for %s was far in the future (a clock "
                "step on failover?); pulled back",
                self._key,
            )
        if reservation.state_lost:
            logger.warning(
                "tupu_async: Redis lost the shared limiter state for %s (a restart without "
                "persistence?); pausing one window so earlier slots cannot overlap new ones",
                self._key,
            )
        self._note_shared(reservation)
        for slot_us in reservation.slots_us:
            if slot_us >= self._pause_until_us:
                self._booked.append(_Slot(slot_us, reservation.now_us))

    async def _call(self, args: list[str | int]) -> Any:
        if self._script_sent:
            call = self._script(keys=self._keys, args=args)  # EVALSHA, loading on NOSCRIPT
        else:  # the first call sends the script itself: one round trip, not three
            call = self._client.eval(SCRIPT, len(self._keys), *self._keys, *args)
        reply = await asyncio.wait_for(call, self._redis_timeout)
        self._script_sent = True
        return reply

    async def _reserve(self, n: int, *, now_us: int | None = None) -> Reservation:
        # A slot maps to local time through the fastest recent reply; a slower reply lands
        # up to the spread of round trips later, so book that much ahead of now.
        lead_us = min(self._clock.rtt_spread_us, self._lease_us)
        known = time.monotonic() - self._last_reply < self._keep_ms / 2000
        horizon_us = lead_us + self._lease_us
        args = self._settings.acquire_args(n, lead_us, horizon_us, known=known, now_us=now_us)
        return Reservation.parse(await self._call(args))

    async def _throttle(
        self, retry_after: float | None, *, now_us: int | None = None
    ) -> ThrottleOutcome:
        pause_us = math.ceil(throttle_pause(retry_after, self._max_retry_after) * 1_000_000)
        explicit = retry_after is not None and math.isfinite(retry_after) and retry_after > 0
        retry_after_us = pause_us if explicit else -1
        args = self._settings.throttle_args(pause_us, retry_after_us, now_us=now_us)
        return ThrottleOutcome.parse(await self._call(args))

    # -- Redis refused or gone -------------------------------------------------------------

    def _switch_to_fallback(self, exc: BaseException) -> None:
        """Redis failed with on_unavailable='local': limit locally, probe in the background."""
        self._fallback, self._fallback_rate_scale = fallback_limiter(
            self._url,
            exc,
            self._qps,
            self._period,
            margin=self._margin,
            min_rate=self._min_rate,
            workers=self._expected_workers,
            retry_every=self._reconnect_interval,
        )
        self._booked.clear()
        self._probe = asyncio.get_running_loop().create_task(self._probe_until_back())

    async def _probe_until_back(self) -> None:
        """Ping Redis every reconnect interval until it answers, then leave the fallback."""
        while True:
            await asyncio.sleep(self._reconnect_interval)
            try:
                await asyncio.wait_for(self._client.ping(), self._redis_timeout)
            except self._unavailable_errors as exc:
                logger.debug(
                    "tupu_async: Redis at %s still unreachable: %s", redacted_url(self._url), exc
                )
                continue
            logger.warning(
                "tupu_async: Redis at %s is reachable again; the shared QPS budget is back",
                redacted_url(self._url),
            )
            self._fallback = None
            self._probe = None
            return
