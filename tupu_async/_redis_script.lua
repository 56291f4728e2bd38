-- The script behind tupu_async.RedisLimiter (loaded by _redis_script.py); see that module.
-- KEYS[1] slot log (sorted start times, at most `limit` long); KEYS[2] state hash:
-- alive, pause_until, and per reaction: throttled_rate, halve_guard, throttled_at
-- ('pause-halve'); widened, widened_at, w_max, cut_rate, cut_at, no_cut_until, recent,
-- jitter, foreign ('adaptive', the state of _throttle_policy.ThrottlePolicy in µs).
-- ARGV: 1 op, 2 now override ('' = the Redis clock; tests only), 3 limit, 4 window_us
-- (period + base margin), 5 qps, 6 min_rate, 7 recovery (rate regained per second after a
-- pause), 8 keep_ms, 9 max_pause_us, 10 max_ahead_us, 11 reaction, 12 base_margin_us,
-- 13 max_margin_us, 14 period_us; acquire: 15 n, 16 lead_us, 17 horizon_us, 18 known,
-- 19 lost_pause_us; throttle: 15 pause_us ('pause-halve'), 16 retry_after_us (-1: none;
-- 'adaptive' pauses only on an explicit Retry-After).
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
local reaction = ARGV[11]
local base_margin = tonumber(ARGV[12])
local max_margin = tonumber(ARGV[13])
local period = tonumber(ARGV[14])
local function fmt(x) return string.format('%.0f', x) end
local function num(x) return string.format('%.17g', x) end

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

local A = redis.call('HMGET', KEYS[2], 'widened', 'widened_at', 'w_max', 'cut_rate', 'cut_at',
                    'no_cut_until', 'recent', 'jitter', 'foreign')
local widened = tonumber(A[1]) or 0
local widened_at = tonumber(A[2]) or 0
local w_max = tonumber(A[3]) or qps
local cut_rate = tonumber(A[4]) or qps
local cut_at = tonumber(A[5])
local no_cut_until = tonumber(A[6]) or 0
local recent_text = A[7] or ''
local jitter_n = tonumber(A[8]) or 0
local foreign_n = tonumber(A[9]) or 0
-- The constants of _throttle_policy (a test checks this port against ThrottlePolicy).
local BETA, CUBIC_C, HALF_LIFE_US, WIDEN, WIDEN_STEP_US = 0.7, 0.4, 60000000, 1.5, 5000
local PERSIST_COUNT, PERSIST_US, OWN_SHARE = 3, 3000000, 0.9

local function margin_at(t)
  if reaction ~= 'adaptive' or widened <= 0 then return base_margin end
  local clean = t - widened_at
  if clean < 0 then clean = 0 end
  return base_margin + widened * math.pow(0.5, clean / HALF_LIFE_US)
end
local function adaptive_rate(t)
  if not cut_at then return qps end
  local elapsed = (t - cut_at) / period
  if elapsed < 0 then elapsed = 0 end
  local k = math.pow(w_max * (1 - BETA) / CUBIC_C, 1 / 3)
  local r = w_max + CUBIC_C * math.pow(elapsed - k, 3)
  local low = min_rate
  if cut_rate > low then low = cut_rate end
  if r < low then r = low end
  if r > qps then r = qps end
  return r
end
local function rate_at(t)
  if reaction == 'adaptive' then return adaptive_rate(t) end
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
  local n = tonumber(ARGV[15])
  local earliest = now + tonumber(ARGV[16])
  local horizon = now + tonumber(ARGV[17])
  local lost = 0
  if ARGV[18] == '1' and not existed then
    lost = 1
    local until_ = now + tonumber(ARGV[19])
    if until_ > pause_until then pause_until = until_ end
    redis.call('HSET', KEYS[2], 'pause_until', fmt(pause_until))
  end
  redis.call('HSET', KEYS[2], 'alive', '1')
  local rate = rate_at(now)
  local margin = margin_at(now)
  window = period + margin
  local spacing = math.ceil(window / rate)
  local last = tonumber(redis.call('LINDEX', KEYS[1], -1))
  local reply = {fmt(now), num(rate), tostring(lost), tostring(clamped), num(margin),
                 tostring(jitter_n), tostring(foreign_n)}
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
elseif ARGV[1] == 'throttle' and reaction == 'adaptive' then
  local margin = margin_at(now)
  local own = 0
  for _, v in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
    local e = tonumber(v)
    if e > now - (period + margin) and e <= now then own = own + 1 end
  end
  local recent = {}
  for v in string.gmatch(recent_text, '[^,]+') do recent[#recent + 1] = tonumber(v) end
  local cause = 'jitter'
  if now < no_cut_until or own < OWN_SHARE * limit then
    cause = 'foreign'
  else
    local count = 0
    for _, t in ipairs(recent) do if t > now - PERSIST_US then count = count + 1 end end
    if count + 1 >= PERSIST_COUNT then cause = 'foreign' end
  end
  recent[#recent + 1] = now
  local kept = {}
  for _, t in ipairs(recent) do if t > now - PERSIST_US then kept[#kept + 1] = fmt(t) end end
  local lowered = 0
  if cause == 'jitter' then
    jitter_n = jitter_n + 1
    local wider = margin * WIDEN + WIDEN_STEP_US
    if wider > max_margin then wider = max_margin end
    widened = wider - base_margin
    widened_at = now
  else
    foreign_n = foreign_n + 1
    if now >= no_cut_until then
      local current = adaptive_rate(now)
      w_max = current
      cut_rate = current * BETA
      if cut_rate < min_rate then cut_rate = min_rate end
      cut_at = now
      no_cut_until = now + period + margin_at(now)
      lowered = 1
    end
  end
  local retry_after = tonumber(ARGV[16])
  if retry_after > 0 then
    if retry_after > max_pause then retry_after = max_pause end
    if now + retry_after > pause_until then pause_until = now + retry_after end
  end
  local fields = {'pause_until', fmt(pause_until), 'alive', '1', 'widened', num(widened),
                  'widened_at', fmt(widened_at), 'w_max', num(w_max), 'cut_rate', num(cut_rate),
                  'no_cut_until', fmt(no_cut_until), 'recent', table.concat(kept, ','),
                  'jitter', tostring(jitter_n), 'foreign', tostring(foreign_n),
                  'throttled_at', fmt(now)}
  if cut_at then
    fields[#fields + 1] = 'cut_at'
    fields[#fields + 1] = fmt(cut_at)
  end
  redis.call('HSET', KEYS[2], unpack(fields))
  local until_ = pause_until
  if no_cut_until > until_ then until_ = no_cut_until end
  local last = redis.call('LINDEX', KEYS[1], -1)
  if last and tonumber(last) > until_ then until_ = tonumber(last) end
  keep(until_)
  return {fmt(pause_until), fmt(now), num(adaptive_rate(now)), tostring(lowered),
          tostring(clamped), cause, num(margin_at(now)), tostring(jitter_n),
          tostring(foreign_n)}
elseif ARGV[1] == 'throttle' then
  local pause_end = now + tonumber(ARGV[15])
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
  return {fmt(pause_until), fmt(now), num(rate_at(now)), tostring(halved), tostring(clamped),
          'halve', num(base_margin), '0', '0'}
end
return redis.error_reply('tupu-async limiter script: unknown operation ' .. tostring(ARGV[1]))
