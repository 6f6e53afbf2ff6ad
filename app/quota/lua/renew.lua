-- Heartbeat: extend the leases of one project's sessions running on one relay. A lease the
-- store lost (a Redis restart without persistence, or expired while the relay was frozen) is
-- taken back only if the project has room and, for a session with a user under a per-user
-- cap, the user has room too: meanwhile other sessions may have taken the slot. Lost leases
-- are taken back oldest session first (the caller sorts them), so when the project or the user
-- is full the newest sessions are the ones left out. Released sessions are never taken back.
-- A held lease missing from its user's record (written before the record existed) is added
-- to it here.
--
-- KEYS[1]  leases of the project
-- KEYS[2]  lease details of the project
-- KEYS[3]  release marks of the project
-- KEYS[4]  counted leases of the project
-- KEYS[5]  provisional leases of the project: a renewed lease is a session's, no longer one
-- KEYS[6], KEYS[7], ...  the leases of each user among the sessions below
-- ARGV[1]  lease time to live, ms
-- ARGV[2]  max concurrent sessions of the project
-- ARGV[3]  max concurrent sessions of a user (-1: no per-user cap)
-- ARGV[4], ARGV[5], ARGV[6], ARGV[7], ...  quadruples: session id, lease details JSON, user id
--          ("" without a user), index in KEYS of the user's leases (0 without a user);
--          oldest session first
-- Result:  {restored, session id, full, session id, full, ...}: how many lost leases were taken
--          back, then each lost lease left out, with the cap that was full ("project" or "user")
local now = now_ms()
purge_expired_leases(KEYS[1], KEYS[2], KEYS[4], now)
purge_expired_releases(KEYS[3], now)
local expiry = now + tonumber(ARGV[1])
local max_sessions = tonumber(ARGV[2])
local max_user_sessions = tonumber(ARGV[3])

local function user_key(i)
  local index = tonumber(ARGV[i + 3])
  if index > 0 then
    return KEYS[index]
  end
  return nil
end

local lost = {}
for i = 4, #ARGV, 4 do
  redis.call('ZREM', KEYS[5], ARGV[i])
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    record_lease(KEYS[1], KEYS[2], KEYS[4], user_key(i), ARGV[i], nil, expiry, now)
  elseif not was_released(KEYS[3], ARGV[i], now) then
    lost[#lost + 1] = i
  end
end
local result = {0}
for _, i in ipairs(lost) do
  local full = nil
  local key = user_key(i)
  if redis.call('ZCARD', KEYS[1]) >= max_sessions then
    full = 'project'
  elseif key and max_user_sessions >= 0
      and user_leases_held(KEYS[1], KEYS[2], KEYS[4], key, ARGV[i + 2], now) >= max_user_sessions then
    full = 'user'
  end
  if full then
    result[#result + 1] = ARGV[i]
    result[#result + 1] = full
  else
    record_lease(KEYS[1], KEYS[2], KEYS[4], key, ARGV[i], ARGV[i + 1], expiry, now)
    result[1] = result[1] + 1
  end
end
expire_with_last_lease(KEYS[1], KEYS[2], KEYS[4], now)
return result
