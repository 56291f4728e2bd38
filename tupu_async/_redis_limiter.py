"""The Redis-backed rate limiter: one QPS budget shared by every process and host.

Holds :class:`RedisLimiter` (the ``[redis]`` extra, asyncio only), the Lua script that
makes each reservation atomic on the Redis server, and the small in-process pacer it
falls back to when Redis is unreachable and ``on_unavailable="local"``.

The ``redis`` package is imported only when a :class:`RedisLimiter` is constructed, so
``import tupu_async`` works without it.
"""

from __future__ import annotations

import asyncio
import collections
import importlib
import logging
import math
import time
import urllib.parse
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from ._exceptions import TransportError
from ._limiter import DEFAULT_THROTTLE_PAUSE, LocalLimiter

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisLimiter"]

#: The window margin for a shared budget. Wider than the local limiter's 15 ms: requests
#: of several processes reach the service with independent send delays (measured with 4
#: workers: p99 7.5 ms, max 17.8 ms, and a 17 ms one made the only overrun), and a
#: shared limiter cannot see when each request really left. 25 ms costs 1% of rate.
DEFAULT_SHARED_MARGIN: Final = 0.025

logger = logging.getLogger("tupu_async")

#: Socket timeouts for a client the limiter creates itself: a Redis that does not answer
#: must turn into an error (or the local fallback) quickly, not hang every request.
REDIS_SOCKET_TIMEOUT: Final = 2.0
#: With ``on_unavailable="local"``, how often (seconds) to try Redis again after it failed.
RECONNECT_INTERVAL: Final = 5.0
#: Ceiling on one pause, whatever a Retry-After header says (seconds).
MAX_PAUSE: Final = 300.0
#: A caller that wakes up later than this fraction of ``margin`` after its slot (an event
#: loop stall) does not start on it: it takes a new slot (at most MAX_LATE_RETRIES times).
LATE_FRACTION_OF_MARGIN: Final = 0.5
MAX_LATE_RETRIES: Final = 3
#: Replies remembered to map the Redis clock onto the local one (NTP-style minimum filter).
CLOCK_SAMPLES: Final = 32

# One script, two operations; see the algorithm in RedisLimiter's docstring. All times are
# integer microseconds on the Redis server's clock (exact in a Lua double up to 2**53).
# KEYS[1] slot log: a list of reserved start times, oldest first, at most `limit` long.
# KEYS[2] state hash: pause_until, throttled_rate, halve_guard, throttled_at.
# ARGV: 1 op ('acquire' | 'throttle'), 2 now override ('' = the Redis clock; tests only),
#       3 limit = floor(qps), 4 window_us = period + margin, 5 qps, 6 min_rate,
#       7 recovery (rate regained per second once a pause is over), 8 keep_ms (how long the
#       keys outlive their last future time), 9 pause_us (throttle only).
_SCRIPT: Final = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local now
if ARGV[2] ~= '' then
  now = tonumber(ARGV[2])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local limit = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local qps = tonumber(ARGV[5])
local min_rate = tonumber(ARGV[6])
local recovery = tonumber(ARGV[7])
local keep_ms = tonumber(ARGV[8])

local st = redis.call('HMGET', KEYS[2], 'pause_until', 'throttled_rate', 'halve_guard')
local pause_until = tonumber(st[1]) or 0
local throttled_rate = tonumber(st[2])
local halve_guard = tonumber(st[3]) or 0

local function rate_at(t)
  if not throttled_rate then return qps end
  local since = t - pause_until
  if since < 0 then since = 0 end
  local r = throttled_rate + recovery * since / 1000000
  if r > qps then r = qps end
  return r
end
local function fmt(x) return string.format('%.0f', x) end
local function keep(horizon)
  local ttl = math.ceil((horizon - now) / 1000) + keep_ms
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end

if ARGV[1] == 'acquire' then
  local rate = rate_at(now)
  local slot = now
  local last = redis.call('LINDEX', KEYS[1], -1)
  if last then
    local paced = tonumber(last) + math.ceil(window / rate)
    if paced > slot then slot = paced end
  end
  if pause_until > slot then slot = pause_until end
  if redis.call('LLEN', KEYS[1]) >= limit then
    local oldest = tonumber(redis.call('LINDEX', KEYS[1], -limit))
    if oldest + window > slot then slot = oldest + window end
  end
  redis.call('RPUSH', KEYS[1], fmt(slot))
  redis.call('LTRIM', KEYS[1], -limit, -1)
  local horizon = slot
  if pause_until > horizon then horizon = pause_until end
  keep(horizon)
  return {fmt(slot), fmt(now), string.format('%.17g', rate)}
elseif ARGV[1] == 'throttle' then
  local pause_end = now + tonumber(ARGV[9])
  if pause_until > pause_end then pause_end = pause_until end
  local halved = 0
  if now >= halve_guard then
    local rate = rate_at(now) / 2
    if rate < min_rate then rate = min_rate end
    throttled_rate = rate
    halve_guard = pause_end
    if now + window > halve_guard then halve_guard = now + window end
    redis.call('HSET', KEYS[2], 'throttled_rate', string.format('%.17g', rate),
               'halve_guard', fmt(halve_guard), 'throttled_at', fmt(now))
    halved = 1
  end
  pause_until = pause_end
  redis.call('HSET', KEYS[2], 'pause_until', fmt(pause_until))
  local horizon = pause_until
  local last = redis.call('LINDEX', KEYS[1], -1)
  if last and tonumber(last) > horizon then horizon = tonumber(last) end
  keep(horizon)
  return {fmt(pause_until), fmt(now), string.format('%.17g', rate_at(now)), tostring(halved)}
end
return redis.error_reply('tupu-async limiter script: unknown operation ' .. tostring(ARGV[1]))
"""


@dataclass(frozen=True)
class _Reservation:
    """One slot taken in the shared log: its start time and the time it was taken (Redis µs)."""

    slot_us: int
    now_us: int
    rate: float

    @property
    def delay(self) -> float:
        return max(0.0, (self.slot_us - self.now_us) / 1_000_000)


@dataclass(frozen=True)
class _ThrottleOutcome:
    """What a throttle did to the shared state (Redis µs)."""

    pause_until_us: int
    now_us: int
    rate: float
    halved: bool


def _import_redis_asyncio() -> Any:
    try:
        return importlib.import_module("redis.asyncio")
    except ImportError as exc:
        raise ImportError(
            "RedisLimiter needs the redis package: pip install 'tupu-async[redis]'"
        ) from exc


def _redacted(url: str) -> str:
    """The URL with any password replaced, fit for error messages and logs."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable Redis URL>"
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _require_asyncio() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "RedisLimiter runs only under asyncio (redis.asyncio is asyncio-only); under trio "
            "use the local limiter, or run the client under asyncio"
        ) from None


def _monotonic_us() -> int:
    return time.monotonic_ns() // 1000


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisLimiter:
    """A QPS budget shared through Redis by every process and host that uses the same key.

    Guarantee: across ALL processes using the same Redis and ``key`` (with the same ``qps``,
    ``period`` and ``margin``), no more than ``floor(qps)`` request starts fall in any window
    of ``period + margin`` seconds, hence never more than ``floor(qps)`` in any trailing
    ``period`` even when each start is up to ``margin`` late (send jitter). Starts are also
    paced ``(period + margin) / current_rate`` apart, so the budget is spread evenly.
    Slot times are on the Redis server's clock (``TIME``), so hosts with skewed clocks agree.

    ``key`` names the budget: use one per Tupu secret id, e.g. ``key=f"tupu:{secret_id}"``
    (the client passes its secret id). The keys ``{key}:slots`` and ``{key}:state`` are used
    (hash-tagged, so they work on Redis Cluster) and expire on their own when idle.

    How it works: :meth:`acquire` runs ONE Lua script (one round trip) that atomically
    computes the next free slot = max(now, last slot + spacing, the ``floor(qps)``-th latest
    slot + period + margin, pause end), appends it to the log (trimmed to ``floor(qps)``
    entries), refreshes the keys' TTL and returns the delay; the caller then sleeps exactly
    that delay. No lock is held across network I/O and nobody polls.

    Throttling (:meth:`on_throttle`, after an HTTP 429): the same script sets the shared
    pause end to ``now + retry_after`` (``DEFAULT_THROTTLE_PAUSE`` when None, at most
    ``MAX_PAUSE``; the later of that and any pause already set) and halves the shared rate
    (never below ``min_rate``) at most once per pause window (until the pause ends, and at
    least one ``period + margin``), so the burst of 429s that were in flight counts once.
    The shared rate then recovers additively, by ``qps / recovery_seconds`` per second after
    the pause ends, computed inside the script from the stored throttle state:
    :meth:`on_success` makes no network call. In this process, callers already sleeping for
    a slot inside the new pause take a new slot; callers in OTHER processes keep slots they
    reserved before the throttle (those fall at most their queue length times the spacing
    after it).

    A caller cancelled while it sleeps gives up its slot, which stays counted (safe).

    A caller that wakes up more than ``margin / 2`` after its slot (an event loop stall; the
    slot is mapped to the local clock through the fastest recent reply) does not start on
    that slot: it takes a new one (the old one stays counted), so the starts that really
    happen stay within ``margin / 2`` of a counted slot. Only stalls cost this extra round
    trip (at most ``MAX_LATE_RETRIES`` per call).

    Redis unreachable: with ``on_unavailable="fail"`` every call raises
    :class:`~tupu_async.TransportError`. With ``"local"`` the limiter warns (``warnings`` and
    the ``tupu_async`` logger) and falls back to a :class:`~tupu_async._limiter.LocalLimiter`
    at ``qps / expected_workers``, trying Redis again every ``RECONNECT_INTERVAL`` seconds.
    During the fallback the budget holds only if ``expected_workers`` is at least the real
    number of processes (and around the switch back a process's last local starts are not
    in the shared log).

    asyncio only (``redis.asyncio`` is): under trio every call raises ``RuntimeError``.
    A ``client`` you pass is used as is and not closed by :meth:`aclose`.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        key: str,
        qps: float = 50.0,
        period: float = 1.0,
        margin: float = DEFAULT_SHARED_MARGIN,
        on_unavailable: Literal["fail", "local"] = "fail",
        expected_workers: int = 1,
        min_rate: float = 1.0,
        recovery_seconds: float = 10.0,
        client: Redis | None = None,  # type: ignore[type-arg, unused-ignore]
    ) -> None:
        if not isinstance(key, str) or not key:
            raise ValueError("key must be a non-empty string, e.g. key=f'tupu:{secret_id}'")
        if not qps >= 1.0 or math.isinf(qps):
            raise ValueError(
                f"qps must be a finite number >= 1, got {qps!r}; for fewer than one request "
                f"per period raise period instead (qps=1, period=2.0 is 0.5 requests/s)"
            )
        if not 0.0 < period < math.inf:
            raise ValueError(f"period must be a positive number of seconds, got {period!r}")
        if not 0.0 <= margin < math.inf:
            raise ValueError(f"margin must be >= 0 seconds, got {margin!r}")
        if on_unavailable not in ("fail", "local"):
            raise ValueError(f"on_unavailable must be 'fail' or 'local', got {on_unavailable!r}")
        if isinstance(expected_workers, bool) or not isinstance(expected_workers, int):
            raise ValueError(f"expected_workers must be an int >= 1, got {expected_workers!r}")
        if expected_workers < 1:
            raise ValueError(f"expected_workers must be >= 1, got {expected_workers!r}")
        if not 0.0 < min_rate <= qps:
            raise ValueError(f"min_rate must be > 0 and <= qps ({qps}), got {min_rate!r}")
        if not 0.0 < recovery_seconds < math.inf:
            raise ValueError(f"recovery_seconds must be > 0, got {recovery_seconds!r}")

        self._url = url
        self._qps = float(qps)
        self._period = float(period)
        self._margin = float(margin)
        self._on_unavailable = on_unavailable
        self._expected_workers = expected_workers
        self._min_rate = float(min_rate)
        self._recovery = self._qps / recovery_seconds
        self._limit = math.floor(self._qps)
        window = self._period + self._margin
        self._window_us = math.ceil(window * 1_000_000)
        self._keep_ms = math.ceil((window + recovery_seconds + 1.0) * 1000)
        self._key = key
        self._keys = [f"{{{key}}}:slots", f"{{{key}}}:state"]

        redis_asyncio = _import_redis_asyncio()
        redis_exceptions = importlib.import_module("redis.exceptions")
        self._unavailable_errors: tuple[type[BaseException], ...] = (
            redis_exceptions.ConnectionError,
            redis_exceptions.TimeoutError,
            OSError,
        )
        self._owns_client = client is None
        if client is None:
            retry = importlib.import_module("redis.asyncio.retry").Retry(
                importlib.import_module("redis.backoff").ExponentialBackoff(cap=0.5, base=0.05),
                2,
            )
            client = redis_asyncio.Redis.from_url(
                url,
                socket_connect_timeout=REDIS_SOCKET_TIMEOUT,
                socket_timeout=REDIS_SOCKET_TIMEOUT,
                retry=retry,
            )
        self._client: Any = client
        self._script: Any = self._client.register_script(_SCRIPT)

        self._current_rate = self._qps
        self._pause_until_us = 0  # the latest pause this process set, Redis clock
        self._throttle_epoch = 0
        self._line: asyncio.Lock | None = None
        self._fallback: LocalLimiter | None = None
        self._fallback_rate_scale = 1.0
        self._next_reconnect = 0.0
        self._late_tolerance = max(self._margin * LATE_FRACTION_OF_MARGIN, 0.001)
        # local monotonic µs at a reply minus Redis's `now` in it; the minimum is the clock
        # offset plus the fastest return trip, so a slot maps to local time as slot + min.
        self._clock_offsets: collections.deque[int] = collections.deque(maxlen=CLOCK_SAMPLES)

    def __repr__(self) -> str:
        return (
            f"RedisLimiter({_redacted(self._url)!r}, key={self._key!r}, "
            f"qps={self._qps}, period={self._period}, on_unavailable={self._on_unavailable!r})"
        )

    @property
    def qps(self) -> float:
        """The configured ceiling (requests per period), shared by everyone on the key."""
        return self._qps

    @property
    def current_rate(self) -> float:
        """The shared rate as of this process's last reservation (the local one in fallback)."""
        if self._fallback is not None:
            return self._fallback.current_rate * self._fallback_rate_scale
        return self._current_rate

    @property
    def using_fallback(self) -> bool:
        """True while Redis is unreachable and the local fallback limits this process."""
        return self._fallback is not None

    async def acquire(self) -> None:
        """Wait until one more request may start now, then take that slot.

        Callers of one process queue locally, first come first served, and only the head
        of the line holds a reservation in Redis. Reserving for every waiting caller at
        once (a batch run has up to ``max_in_flight`` of them) booked slots seconds ahead;
        their replies then came back late and the late wake-ups gave a fifth of the shared
        budget away (measured with 4 processes).
        """
        if self._line is None:
            self._line = asyncio.Lock()  # FIFO; created here, inside the running loop
        async with self._line:
            await self._acquire_slot()

    async def on_throttle(self, retry_after: float | None = None) -> None:
        """The service throttled us (HTTP 429): pause every process on the key, halve the rate."""
        _require_asyncio()
        fallback = self._fallback_in_force()
        if fallback is not None:
            await fallback.on_throttle(retry_after)
            return
        try:
            outcome = await self._throttle(retry_after)
        except self._unavailable_errors as exc:
            fallback = self._unavailable(exc)
            await fallback.on_throttle(retry_after)
            return
        self._reconnected()
        self._pause_until_us = max(self._pause_until_us, outcome.pause_until_us)
        self._throttle_epoch += 1  # wakes no one: sleepers check it when their sleep ends
        self._current_rate = outcome.rate
        if outcome.halved:
            logger.info(
                "tupu_async: throttled; shared rate for %s lowered to %.2f per %.3g s",
                self._key,
                outcome.rate,
                self._period,
            )

    def on_success(self) -> None:
        """No network call: the shared rate recovers with time, computed by the script."""
        if self._fallback is not None:
            self._fallback.on_success()

    async def aclose(self) -> None:
        """Close the Redis connections, unless the client was passed in."""
        if self._owns_client:
            await self._client.aclose()

    # -- internals (the tests call these to read slot times on the Redis clock) ----------

    async def _acquire_slot(self) -> _Reservation | None:
        """Acquire; return the reservation started on, or None when the fallback served."""
        _require_asyncio()
        late_retries = 0
        while True:
            fallback = self._fallback_in_force()
            if fallback is not None:
                await fallback.acquire()
                return None
            epoch = self._throttle_epoch
            try:
                reservation = await self._reserve()
            except self._unavailable_errors as exc:
                await self._unavailable(exc).acquire()
                return None
            self._clock_offsets.append(_monotonic_us() - reservation.now_us)
            self._reconnected()
            self._current_rate = reservation.rate
            if reservation.delay > 0:
                await asyncio.sleep(reservation.delay)
            # A throttle reported in this process since we asked: if our slot falls inside
            # the new pause, give it up (it stays counted) and take one after the pause.
            if epoch != self._throttle_epoch and reservation.slot_us < self._pause_until_us:
                continue
            late_us = _monotonic_us() - reservation.slot_us - min(self._clock_offsets)
            late = late_us / 1_000_000
            if late > self._late_tolerance and late_retries < MAX_LATE_RETRIES:
                late_retries += 1
                logger.debug(
                    "tupu_async: woke %.1f ms after the slot; taking a new one", 1e3 * late
                )
                continue
            return reservation

    def _args(self, op: str, now_us: int | None, pause_us: int = 0) -> list[str | int | float]:
        return [
            op,
            "" if now_us is None else str(now_us),
            self._limit,
            self._window_us,
            repr(self._qps),
            repr(self._min_rate),
            repr(self._recovery),
            self._keep_ms,
            pause_us,
        ]

    async def _reserve(self, *, now_us: int | None = None) -> _Reservation:
        reply = await self._script(keys=self._keys, args=self._args("acquire", now_us))
        return _Reservation(int(reply[0]), int(reply[1]), float(_text(reply[2])))

    async def _throttle(
        self, retry_after: float | None, *, now_us: int | None = None
    ) -> _ThrottleOutcome:
        if retry_after is None or not math.isfinite(retry_after):
            pause_us = math.ceil(DEFAULT_THROTTLE_PAUSE * 1_000_000)
        else:
            pause_us = math.ceil(min(max(0.0, float(retry_after)), MAX_PAUSE) * 1_000_000)
        reply = await self._script(keys=self._keys, args=self._args("throttle", now_us, pause_us))
        return _ThrottleOutcome(
            int(reply[0]), int(reply[1]), float(_text(reply[2])), _text(reply[3]) == "1"
        )

    def _fallback_in_force(self) -> LocalLimiter | None:
        """The local fallback to use now, or None to use Redis (in fallback mode, one caller
        per RECONNECT_INTERVAL gets None and tries Redis again)."""
        if self._fallback is None:
            return None
        now = time.monotonic()
        if now < self._next_reconnect:
            return self._fallback
        self._next_reconnect = now + RECONNECT_INTERVAL
        return None

    def _reconnected(self) -> None:
        if self._fallback is not None:
            logger.warning(
                "tupu_async: Redis at %s is reachable again; the shared QPS budget is back",
                _redacted(self._url),
            )
            self._fallback = None

    def _unavailable(self, exc: BaseException) -> LocalLimiter:
        """Redis failed: raise TransportError, or switch to (or stay on) the local fallback."""
        where = _redacted(self._url)
        if self._on_unavailable == "fail":
            raise TransportError(
                f"cannot reach Redis at {where} for the shared QPS budget ({exc}): start Redis "
                f"there, fix the URL, or pass on_unavailable='local' to fall back to a "
                f"per-process limit of qps / expected_workers"
            ) from exc
        self._next_reconnect = time.monotonic() + RECONNECT_INTERVAL
        if self._fallback is not None:
            logger.debug("tupu_async: Redis at %s still unreachable: %s", where, exc)
            return self._fallback
        local_qps = self._qps / self._expected_workers
        message = (
            f"cannot reach Redis at {where} for the shared QPS budget ({exc}); falling back to "
            f"a per-process limit of {local_qps:g} requests per {self._period:g} s "
            f"(qps / expected_workers) and retrying Redis every {RECONNECT_INTERVAL:g} s. "
            f"Start Redis or fix the URL; set expected_workers to the number of processes"
        )
        warnings.warn(message, RuntimeWarning, stacklevel=4)
        logger.warning("tupu_async: %s", message)
        # LocalLimiter needs qps >= 1: below one request per period, stretch the period.
        if local_qps >= 1.0:
            local_period, self._fallback_rate_scale = self._period, 1.0
        else:
            local_period, self._fallback_rate_scale = self._period / local_qps, local_qps
        local_ceiling = local_qps / self._fallback_rate_scale
        self._fallback = LocalLimiter(
            local_ceiling,
            local_period,
            margin=self._margin,
            min_rate=min(local_ceiling, self._min_rate / self._expected_workers),
        )
        return self._fallback
