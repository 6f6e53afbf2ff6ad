-- Acquire one concurrent-session lease unless the project's token window is spent or a
-- session limit is reached. Acquiring a lease that is already held extends it (a retried call).
-- A session already released is refused: the relay gave up on this admission (a timeout) and
-- released it, and Redis, stalled, ran that release before this script.
-- Cost: O(log n) in the project's leases (the per-user check reads the user's own record;
-- see common.lua for the fallback while an older relay version's leases are live).
--
-- KEYS[1]  leases of the project
-- KEYS[2]  lease details of the project
-- KEYS[3]  token buckets of the project
-- KEYS[4]  release marks of the project
-- KEYS[5]  counted leases of the project
-- KEYS[6]  the user's leases (only when the session has a user)
-- ARGV[1]  session id
-- ARGV[2]  lease details, JSON (stored as is)
-- ARGV[3]  user id ("" without a user)
-- ARGV[4]  lease time to live, ms
-- ARGV[5]  max concurrent sessions of the project
-- ARGV[6]  max concurrent sessions of the user (-1: no per-user cap, or no user)
-- ARGV[7]  tokens per minute of the project
-- ARGV[8]  window length, seconds
-- Result:  {"ok"} when the lease is held, else {kind, count, limit, ms_until_free} with kind
--          "tokens" (count: tokens in the window), "sessions" or "user_sessions" (count: leases
--          held; ms_until_free: -1), or {"released", 0, 0, -1}.
local now = now_ms()
if was_released(KEYS[4], ARGV[1], now) then
  return {'released', 0, 0, -1}
end
purge_expired_leases(KEYS[1], KEYS[2], KEYS[5], now)

if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  local tokens_per_minute = tonumber(ARGV[7])
  local used, ms_until_free = token_window(KEYS[3], tokens_per_minute, tonumber(ARGV[8]), now)
  if ms_until_free >= 0 then
    return {'tokens', used, tokens_per_minute, ms_until_free}
  end

  local held = redis.call('ZCARD', KEYS[1])
  local max_sessions = tonumber(ARGV[5])
  if held >= max_sessions then
    return {'sessions', held, max_sessions, -1}
  end

  local max_user_sessions = tonumber(ARGV[6])
  if max_user_sessions >= 0 and KEYS[6] then
    local held_by_user = user_leases_held(KEYS[1], KEYS[2], KEYS[5], KEYS[6], ARGV[3], now)
    if held_by_user >= max_user_sessions then
      return {'user_sessions', held_by_user, max_user_sessions, -1}
    end
  end
end

record_lease(KEYS[1], KEYS[2], KEYS[5], KEYS[6], ARGV[1], ARGV[2], now + tonumber(ARGV[4]), now)
expire_with_last_lease(KEYS[1], KEYS[2], KEYS[5], now)
return {'ok'}
