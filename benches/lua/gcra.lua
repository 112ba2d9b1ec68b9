-- GCRA with the theoretical arrival time (TAT) in a string: the Lua baseline
-- for RL.GCRA (benchmarks only; same idea as other GCRA scripts, our code).
--
--   EVALSHA <sha> 1 key burst rate period cost
--     burst   integer >= 1: the largest burst (the reply's limit)
--     rate    units per `period` (decimal)
--     period  seconds (decimal)
--     cost    integer >= 0 (0 = peek: writes nothing)
--
-- The emission interval T = period / rate (microseconds, rounded up); the key
-- holds the TAT in unix microseconds as an integer string, and expires at the
-- TAT (when the limiter is fresh again). A request of `cost` is allowed when
-- max(TAT, now) + cost * T - now <= burst * T. Server clock from
-- redis.call('TIME'); atomic (one script); Redis 7 replicates its effects.
-- A denied request writes nothing.
-- Reply, as the module's: {allowed, burst, remaining, retry_after_ms, reset_after_ms}
-- (retry_after_ms -1 when cost > burst).

local key = KEYS[1]
local burst = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = math.ceil(period * 1000000 / rate)
local tolerance = burst * interval

local tat = tonumber(redis.call('GET', key)) or now
if tat < now then tat = now end

local function ms(us) return math.ceil(us / 1000) end

if cost > burst then
  return {0, burst, math.floor((tolerance - (tat - now)) / interval), -1, ms(tat - now)}
end
local new_tat = tat + cost * interval
if new_tat - now <= tolerance then
  if cost > 0 then
    redis.call('SET', key, string.format('%d', new_tat), 'PX', ms(new_tat - now))
  end
  return {1, burst, math.floor((tolerance - (new_tat - now)) / interval), 0, ms(new_tat - now)}
end
return {0, burst, math.floor((tolerance - (tat - now)) / interval),
        ms(new_tat - tolerance - now), ms(tat - now)}
