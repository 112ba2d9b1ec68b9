-- Sliding log in a sorted set: the Lua baseline for RL.SLIDING (benchmarks only).
--
--   EVALSHA <sha> 1 key limit window cost
--     limit   integer >= 1: units allowed in any `window`
--     window  seconds (decimal, millisecond precision)
--     cost    integer >= 0 (0 = peek: adds nothing)
--
-- The classic pattern: ZREMRANGEBYSCORE drops the admissions that left the
-- window (t - window, t], ZCARD counts the rest, ZADD records the `cost` new
-- ones (scores: unix microseconds from redis.call('TIME'); members: the
-- microseconds followed by a 3-digit sequence number n, which grows with the
-- count, so members are unique within one microsecond; Redis stores such a
-- 19-digit member as an integer, the most compact choice; "<micros>-<n>" past
-- n = 999), PEXPIRE keeps the key only while it has admissions in the
-- window. A denied request adds nothing and keeps the TTL. Atomic (one
-- script); Redis 7 replicates its effects.
-- Reply, as the module's: {allowed, limit, remaining, retry_after_ms, reset_after_ms}
-- (retry_after_ms -1 when cost > limit).

local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window_us = math.floor(tonumber(ARGV[2]) * 1000 + 0.5) * 1000
local cost = tonumber(ARGV[3])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%d', now - window_us))
local count = redis.call('ZCARD', key)

local function leaves_in_ms(index) -- ms until the entry at `index` leaves the window
  local e = redis.call('ZRANGE', key, index, index, 'WITHSCORES')
  if e[2] == nil then return 0 end
  return math.ceil((tonumber(e[2]) + window_us - now) / 1000)
end

if cost > limit then
  return {0, limit, math.max(0, limit - count), -1, leaves_in_ms(-1)}
end
if count + cost <= limit then
  if cost == 0 then
    return {1, limit, limit - count, 0, leaves_in_ms(-1)}
  end
  local args = {}
  local stamp = string.format('%d', now)
  for i = 1, cost do
    args[#args + 1] = stamp
    local n = count + i
    if n < 1000 then
      args[#args + 1] = stamp .. string.format('%03d', n)
    else
      args[#args + 1] = stamp .. '-' .. n
    end
    if #args == 1000 or i == cost then -- unpack() has a stack limit: batches
      redis.call('ZADD', key, unpack(args))
      args = {}
    end
  end
  redis.call('PEXPIRE', key, window_us / 1000)
  return {1, limit, limit - count - cost, 0, window_us / 1000}
end
-- Denied: enough of the oldest must leave for `cost` to fit.
return {0, limit, limit - count, leaves_in_ms(count + cost - limit - 1), leaves_in_ms(-1)}
