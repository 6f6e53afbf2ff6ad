-- Heartbeat: extend the leases of one project's sessions running on one relay. A lease the
-- store lost (a Redis restart without persistence, or expired while the relay was frozen) is
-- taken back only if the project has room: meanwhile other sessions may have taken its slot.
-- Lost leases are taken back oldest session first (the caller sorts them), so when the project
-- is full the newest sessions are the ones left out. Released sessions are never taken back.
--
-- KEYS[1]  leases of the project
-- KEYS[2]  lease details of the project
-- KEYS[3]  release marks of the project
-- ARGV[1]  lease time to live, ms
-- ARGV[2]  max concurrent sessions of the project
-- ARGV[3], ARGV[4], ...  pairs: session id, lease details JSON, oldest session first
-- Result:  {restored, session id, session id, ...}: how many lost leases were taken back, then
--          the ids of the lost leases left out because the project is full
local now = now_ms()
purge_expired_leases(KEYS[1], KEYS[2], now)
purge_expired_releases(KEYS[3], now)
local expiry = now + tonumber(ARGV[1])
local max_sessions = tonumber(ARGV[2])
local lost = {}
for i = 3, #ARGV, 2 do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], expiry, ARGV[i])
  elseif not was_released(KEYS[3], ARGV[i], now) then
    lost[#lost + 1] = i
  end
end
local result = {0}
for _, i in ipairs(lost) do
  if redis.call('ZCARD', KEYS[1]) < max_sessions then
    redis.call('ZADD', KEYS[1], expiry, ARGV[i])
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
    result[1] = result[1] + 1
  else
    result[#result + 1] = ARGV[i]
  end
end
expire_with_last_lease(KEYS[1], KEYS[2], now)
return result
