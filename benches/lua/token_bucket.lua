-- Token bucket in a hash: the Lua baseline for RL.TOKENBUCKET (benchmarks only).
--
--   EVALSHA <sha> 1 key capacity rate period cost
--     capacity  integer >= 1: the bucket's size (a new key starts full)
--     rate      tokens added per `period` seconds (decimal)
--     period    seconds (decimal)
--     cost      integer >= 0 (0 = peek: writes nothing)
--
-- State: a hash {tokens = <float>, ts = <unix microseconds>}, refilled lazily
-- from the server's clock (redis.call('TIME')); Redis 7 replicates the
-- script's effects, not the script. An allowed request writes both fields and
-- sets the TTL to the instant the bucket is full again; a denied request
-- writes nothing.
-- Reply, as the module's: {allowed, capacity, remaining, retry_after_ms, reset_after_ms}
-- (retry_after_ms -1 when cost > capacity). Floating point: good to a few
-- parts in 1e15, which is what a typical hand-written script gets.

local key = KEYS[1]
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local per_us = rate / (period * 1000000) -- tokens per microsecond

local tokens = capacity
local st = redis.call('HMGET', key, 'tokens', 'ts')
if st[1] then
  tokens = tonumber(st[1])
  local ts = tonumber(st[2])
  if now > ts then
    tokens = math.min(capacity, tokens + (now - ts) * per_us)
  end
end

local function ms_until(units) -- time to refill `units` tokens, in ms rounded up
  if units <= 0 then return 0 end
  return math.ceil(units / per_us / 1000)
end

if cost > capacity then
  return {0, capacity, math.floor(tokens), -1, ms_until(capacity - tokens)}
end
if tokens >= cost then
  tokens = tokens - cost
  local reset = ms_until(capacity - tokens)
  if cost > 0 then
    redis.call('HSET', key, 'tokens', string.format('%.17g', tokens), 'ts', string.format('%d', now))
    redis.call('PEXPIRE', key, reset)
  end
  return {1, capacity, math.floor(tokens), 0, reset}
end
return {0, capacity, math.floor(tokens), ms_until(cost - tokens), ms_until(capacity - tokens)}
