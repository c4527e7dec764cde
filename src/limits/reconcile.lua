-- Replaces a token reservation with the tokens really used, atomically and in one round
-- trip: moves the token windows (fields 2 and 3 of the hash admit.lua keeps) by `delta`
-- tokens, as gcra::adjust does in memory. Giving back never goes below empty.
--
-- KEYS[1]  hash: window slot -> theoretical arrival time (microseconds)
-- ARGV[1]  delta in tokens (negative gives back)
-- ARGV[2 + 2j], ARGV[3 + 2j], for token slot 2 + j, j = 0..1:
--          interval (microseconds; 0 = slot unused), capacity
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local delta = tonumber(ARGV[1])
local longest = 0
for j = 0, 1 do
  local interval = tonumber(ARGV[2 + 2 * j])
  if interval > 0 then
    local units = math.min(math.abs(delta), tonumber(ARGV[3 + 2 * j]))
    local tat = tonumber(redis.call('HGET', KEYS[1], 2 + j))
    if delta >= 0 then
      tat = math.max(tat or now, now) + units * interval
    elseif tat then
      tat = math.max(tat - units * interval, 0)
    end
    if tat then
      redis.call('HSET', KEYS[1], 2 + j, string.format('%.0f', tat))
      if tat - now > longest then longest = tat - now end
    end
  end
end
if longest > 0 then
  local ttl = math.ceil(longest / 1000) + 1000
  if redis.call('PTTL', KEYS[1]) < ttl then
    redis.call('PEXPIRE', KEYS[1], ttl)
  end
end
return 1
