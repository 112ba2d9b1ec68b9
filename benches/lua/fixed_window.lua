-- Fixed window counter with INCRBY + PEXPIRE: the Lua baseline for RL.FIXED
-- (benchmarks only).
--
--   EVALSHA <sha> 1 key limit window cost
--     limit   integer >= 1: units allowed per window
--     window  seconds (decimal, millisecond precision); windows start at
--             multiples of `window` since the Unix epoch, as RL.FIXED's
--     cost    integer >= 0 (0 = peek: writes nothing)
--
-- The key is an integer counter. An allowed request INCRBYs it and, only when
-- the counter is new, PEXPIREs it to the window's end (rounded up to the ms,
-- from redis.call('TIME')); a denied request changes nothing (it is not
-- counted). Atomic (one script); Redis 7 replicates its effects.
-- Reply, as the module's: {allowed, limit, remaining, retry_after_ms, reset_after_ms}
-- (retry_after_ms -1 when cost > limit).

local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window_us = math.floor(tonumber(ARGV[2]) * 1000 + 0.5) * 1000
local cost = tonumber(ARGV[3])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local reset = math.ceil((window_us - now % window_us) / 1000) -- ms to the window's end

local count = tonumber(redis.call('GET', key)) or 0
if cost > limit then
  return {0, limit, math.max(0, limit - count), -1, reset}
end
if count + cost > limit then
  return {0, limit, limit - count, reset, reset}
end
if cost > 0 then
  local n = redis.call('INCRBY', key, cost)
  if n == cost then
    redis.call('PEXPIRE', key, reset)
  end
end
return {1, limit, limit - count - cost, 0, reset}
