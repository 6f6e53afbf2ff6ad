-- Heartbeat: extend leases of one project, re-creating those the store lost (a Redis restart
-- without persistence), so sessions still running are counted again.
--
-- KEYS[1]  leases of the project
-- KEYS[2]  lease details of the project
-- ARGV[1]  lease time to live, ms
-- ARGV[2], ARGV[3], ...  pairs: session id, lease details JSON
-- Result:  how many of the leases were missing or expired (re-created)
local now = now_ms()
local expiry = now + tonumber(ARGV[1])
local recreated = 0
for i = 2, #ARGV, 2 do
  local current = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if not current or tonumber(current) <= now then
    recreated = recreated + 1
  end
  redis.call('ZADD', KEYS[1], expiry, ARGV[i])
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
expire_with_last_lease(KEYS[1], KEYS[2], now)
return recreated
