"""The Lua script behind :class:`~tupu_async.RedisLimiter`, its arguments and its replies.

One script, two operations, each one atomic round trip. All times are integer
microseconds on the Redis server's clock (exact in a Lua double up to 2**53).

- ``acquire`` appends up to ``n`` slots to the shared log. Each slot is
  max(earliest, last slot + spacing, the ``limit``-th latest slot + window, pause end),
  where earliest is ``now + lead`` (the caller cannot use a slot before the reply reaches
  it). The first slot is always taken; further ones only while they fall within
  ``horizon`` of now, so a process never books far ahead of its own need.
- ``throttle`` extends the shared pause and halves the shared rate, at most once per
  pause window; the rate then recovers additively after the pause (computed from the
  stored state, so successes cost no call).

Both operations first repair the state: a pause ending more than ``max_pause`` after now,
or log entries more than ``max_ahead`` after the pause end (a clock step on failover),
are pulled back to those bounds. The log holds real starts no later than their stored
times, so pulling an entry back to a bound that is still in the future only ever delays
the next slot: it stays fail-closed. ``acquire`` with ``known=1`` on a missing state key
means Redis lost the state (a restart without persistence) while slots handed out before
may still be in use: it sets a pause of ``lost_pause`` before handing out any new slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

__all__ = ["SCRIPT", "Reservation", "ScriptSettings", "ThrottleOutcome"]

# KEYS[1] slot log (sorted start times, at most `limit` long); KEYS[2] state hash:
# alive, pause_until, throttled_rate, halve_guard, throttled_at.
# ARGV: 1 op, 2 now override ('' = the Redis clock; tests only), 3 limit, 4 window_us,
# 5 qps, 6 min_rate, 7 recovery (rate regained per second after a pause), 8 keep_ms,
# 9 max_pause_us, 10 max_ahead_us; acquire: 11 n, 12 lead_us, 13 horizon_us, 14 known,
# 15 lost_pause_us; throttle: 11 pause_us.
SCRIPT: Final = """
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
local max_pause = tonumber(ARGV[9])
local max_ahead = tonumber(ARGV[10])
local function fmt(x) return string.format('%.0f', x) end

local existed = redis.call('EXISTS', KEYS[2]) == 1
local st = redis.call('HMGET', KEYS[2], 'pause_until', 'throttled_rate', 'halve_guard')
local pause_until = tonumber(st[1]) or 0
local throttled_rate = tonumber(st[2])
local halve_guard = tonumber(st[3]) or 0
local clamped = 0

if pause_until > now + max_pause then
  pause_until = now + max_pause
  if halve_guard > pause_until then halve_guard = pause_until end
  redis.call('HSET', KEYS[2], 'pause_until', fmt(pause_until), 'halve_guard', fmt(halve_guard))
  clamped = 1
end
local cap = now
if pause_until > cap then cap = pause_until end
cap = cap + max_ahead
local len = redis.call('LLEN', KEYS[1])
local i = -1
while i >= -len and tonumber(redis.call('LINDEX', KEYS[1], i)) > cap do
  redis.call('LSET', KEYS[1], i, fmt(cap))
  clamped = 1
  i = i - 1
end

local function rate_at(t)
  if not throttled_rate then return qps end
  local since = t - pause_until
  if since < 0 then since = 0 end
  local r = throttled_rate + recovery * since / 1000000
  if r > qps then r = qps end
  return r
end
local function keep(horizon)
  local ttl = math.ceil((horizon - now) / 1000) + keep_ms
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end

if ARGV[1] == 'acquire' then
  local n = tonumber(ARGV[11])
  local earliest = now + tonumber(ARGV[12])
  local horizon = now + tonumber(ARGV[13])
  local lost = 0
  if ARGV[14] == '1' and not existed then
    lost = 1
    local until_ = now + tonumber(ARGV[15])
    if until_ > pause_until then pause_until = until_ end
    redis.call('HSET', KEYS[2], 'pause_until', fmt(pause_until))
  end
  redis.call('HSET', KEYS[2], 'alive', '1')
  local rate = rate_at(now)
  local spacing = math.ceil(window / rate)
  local last = tonumber(redis.call('LINDEX', KEYS[1], -1))
  local reply = {fmt(now), string.format('%.17g', rate), tostring(lost), tostring(clamped)}
  for k = 1, n do
    local slot = earliest
    if last and last + spacing > slot then slot = last + spacing end
    if pause_until > slot then slot = pause_until end
    if redis.call('LLEN', KEYS[1]) >= limit then
      local oldest = tonumber(redis.call('LINDEX', KEYS[1], -limit))
      if oldest + window > slot then slot = oldest + window end
    end
    if k > 1 and slot > horizon then break end
    redis.call('RPUSH', KEYS[1], fmt(slot))
    redis.call('LTRIM', KEYS[1], -limit, -1)
    last = slot
    reply[#reply + 1] = fmt(slot)
  end
  local until_ = last
  if pause_until > until_ then until_ = pause_until end
  keep(until_)
  return reply
elseif ARGV[1] == 'throttle' then
  local pause_end = now + tonumber(ARGV[11])
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
  redis.call('HSET', KEYS[2], 'pause_until', fmt(pause_until), 'alive', '1')
  local until_ = pause_until
  local last = redis.call('LINDEX', KEYS[1], -1)
  if last and tonumber(last) > until_ then until_ = tonumber(last) end
  keep(until_)
  return {fmt(pause_until), fmt(now), string.format('%.17g', rate_at(now)), tostring(halved),
          tostring(clamped)}
end
return redis.error_reply('tupu-async limiter script: unknown operation ' .. tostring(ARGV[1]))
"""


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
        ]

    def acquire_args(
        self, n: int, lead_us: int, horizon_us: int, *, known: bool, now_us: int | None = None
    ) -> list[str | int]:
        """Arguments to reserve up to ``n`` slots (at least one)."""
        extra: list[str | int] = [n, lead_us, horizon_us, "1" if known else "0"]
        return [*self.common("acquire", now_us), *extra, self.lost_pause_us]

    def throttle_args(self, pause_us: int, *, now_us: int | None = None) -> list[str | int]:
        """Arguments to pause everyone for ``pause_us`` and halve the rate."""
        return [*self.common("throttle", now_us), pause_us]


@dataclass(frozen=True)
class Reservation:
    """Slots taken in one call (Redis µs, ascending), the Redis time it ran at, the rate."""

    now_us: int
    rate: float
    state_lost: bool
    clamped: bool
    slots_us: tuple[int, ...]

    @classmethod
    def parse(cls, reply: Any) -> Reservation:
        return cls(
            int(reply[0]),
            float(_text(reply[1])),
            _text(reply[2]) == "1",
            _text(reply[3]) == "1",
            tuple(int(slot) for slot in reply[4:]),
        )


@dataclass(frozen=True)
class ThrottleOutcome:
    """What a throttle did to the shared state (Redis µs)."""

    pause_until_us: int
    now_us: int
    rate: float
    halved: bool
    clamped: bool

    @classmethod
    def parse(cls, reply: Any) -> ThrottleOutcome:
        return cls(
            int(reply[0]),
            int(reply[1]),
            float(_text(reply[2])),
            _text(reply[3]) == "1",
            _text(reply[4]) == "1",
        )
