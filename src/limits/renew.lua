-- Extends the stream leases this llmgate still holds, so a crashed replica's streams stop
-- counting after one lease length while a live replica's never do.
-- KEYS[i]: a lease set; ARGV[1]: lease length (ms); ARGV[i + 1]: the lease id in KEYS[i].
local t = redis.call('TIME')
local until_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', until_ms, ARGV[i + 1])
  redis.call('PEXPIRE', key, ARGV[1])
end
return #KEYS
