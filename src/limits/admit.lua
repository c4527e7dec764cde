-- One rate limit decision for one key, atomically and in one round trip: the GCRA of
-- gcra.rs over up to four windows kept as fields of one hash, plus the key's open streams
-- kept as leases in a sorted set. Times come from Redis, so all replicas share one clock.
--
-- KEYS[1]  hash: window slot -> theoretical arrival time (microseconds)
-- KEYS[2]  sorted set: stream lease id -> expiry (milliseconds)
-- ARGV[1]  most streams at once (0: streams are not counted)
-- ARGV[2]  this request's lease id      ARGV[3]  lease length (ms)
-- ARGV[4 + 3i], ARGV[5 + 3i], ARGV[6 + 3i], for slot i = 0..3:
--          interval (microseconds; 0 = slot unused), capacity, cost
-- Returns {verdict, slot, retry_us, remaining_0, reset_us_0, ..., remaining_3, reset_us_3};
-- verdict 0 = admitted, 1 = refused by `slot` (retry_us -1: it never fits), 2 = streams full.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now / 1000)
local max_streams = tonumber(ARGV[1])
if max_streams > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms)
  if redis.call('ZCARD', KEYS[2]) >= max_streams then
    return {2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
  end
end
local out = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
local tats, aheads = {}, {}
local denied = false
for i = 0, 3 do
  local interval = tonumber(ARGV[4 + 3 * i])
  if interval > 0 then
    local cap = tonumber(ARGV[5 + 3 * i])
    local cost = tonumber(ARGV[6 + 3 * i])
    local tat = tonumber(redis.call('HGET', KEYS[1], i)) or now
    if tat < now then tat = now end
    local ahead = tat - now + cost * interval
    tats[i], aheads[i] = tat, ahead
    if not denied then
      if cost > cap then
        denied = true
        out[1], out[2], out[3] = 1, i, -1
      elseif ahead > interval * cap then
        denied = true
        out[1], out[2], out[3] = 1, i, ahead - interval * cap
      end
    end
  end
end
local longest = 0
for i = 0, 3 do
  local interval = tonumber(ARGV[4 + 3 * i])
  if interval > 0 then
    local span = interval * tonumber(ARGV[5 + 3 * i])
    -- Refused: the windows are reported as they stand, uncharged.
    local ahead = denied and (tats[i] - now) or aheads[i]
    if ahead > longest then longest = ahead end
    out[4 + 2 * i] = math.floor(math.max(span - ahead, 0) / interval)
    out[5 + 2 * i] = ahead
    if not denied then
      redis.call('HSET', KEYS[1], i, string.format('%.0f', now + ahead))
    end
  end
end
if denied then
  return out
end
local ttl = math.ceil(longest / 1000) + 1000
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
if max_streams > 0 then
  redis.call('ZADD', KEYS[2], now_ms + tonumber(ARGV[3]), ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
return out
