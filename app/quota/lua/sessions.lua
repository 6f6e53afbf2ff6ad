-- The live leases of a project, for the admin usage endpoint.
--
-- KEYS[1]  leases of the project
-- KEYS[2]  lease details of the project
-- ARGV:    none
-- Result:  flat list: session id, lease details JSON, session id, lease details JSON, ...
local now = now_ms()
purge_expired_leases(KEYS[1], KEYS[2], KEYS[3], now)
local live = {}
for _, session_id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  live[#live + 1] = session_id
  live[#live + 1] = redis.call('HGET', KEYS[2], session_id)
end
return live
