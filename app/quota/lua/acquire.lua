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
-- KEYS[6]  provisional leases of the project
-- KEYS[7]  the user's leases (only when the session has a user)
-- ARGV[1]  session id
-- ARGV[2]  lease details, JSON (stored as is)
-- ARGV[3]  user id ("" without a user)
-- ARGV[4]  lease time to live, ms
-- ARGV[5]  max concurrent sessions of the project
-- ARGV[6]  max concurrent sessions of the user (-1: no per-user cap, or no user)
-- ARGV[7]  tokens per minute of the project
-- ARGV[8]  window length, seconds
-- ARGV[9]  "1": a provisional lease (its setup is still on its way: see keeper.py), else "0";
--          acquiring a held lease with "0" makes it a session's
-- Result:  {"ok"} when the lease is held, else {kind, count, limit, ms_until_free} with kind
--          "tokens" (count: tokens in the window), "sessions" or "user_sessions" (count: leases
--          held by sessions; ms_until_free: ms until the first provisional lease lapses, -1
--          without one), or {"released", 0, 0, -1}; then, for "sessions" and "user_sessions",
--          how many provisional leases the project holds.
local now = now_ms()
if was_released(KEYS[4], ARGV[1], now) then
  return {'released', 0, 0, -1}
end
purge_expired_leases(KEYS[1], KEYS[2], KEYS[5], now)
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now)

-- Leases of sockets whose setup is on its way are counted (they are likely sessions), but a
-- refusal says how many there are and when the first lapses: a valid setup then tries again.
local function provisional_answer(kind, held, limit)
  local starting = redis.call('ZCARD', KEYS[6])
  local first = redis.call('ZRANGE', KEYS[6], 0, 0, 'WITHSCORES')
  local ms_until_lapse = -1
  if #first == 2 then
    ms_until_lapse = tonumber(first[2]) - now
  end
  return {kind, held, limit, ms_until_lapse, starting}
end

if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  local tokens_per_minute = tonumber(ARGV[7])
  local used, ms_until_free = token_window(KEYS[3], tokens_per_minute, tonumber(ARGV[8]), now)
  if ms_until_free >= 0 then
    return {'tokens', used, tokens_per_minute, ms_until_free}
  end

  local held = redis.call('ZCARD', KEYS[1])
  local max_sessions = tonumber(ARGV[5])
  if held >= max_sessions then
    return provisional_answer('sessions', held - redis.call('ZCARD', KEYS[6]), max_sessions)
  end

  local max_user_sessions = tonumber(ARGV[6])
  if max_user_sessions >= 0 and KEYS[7] then
    local held_by_user = user_leases_held(KEYS[1], KEYS[2], KEYS[5], KEYS[7], ARGV[3], now)
    if held_by_user >= max_user_sessions then
      return provisional_answer('user_sessions', held_by_user, max_user_sessions)
    end
  end
end

local expiry = now + tonumber(ARGV[4])
record_lease(KEYS[1], KEYS[2], KEYS[5], KEYS[7], ARGV[1], ARGV[2], expiry, now)
if ARGV[9] == '1' then
  redis.call('ZADD', KEYS[6], expiry, ARGV[1])
else
  redis.call('ZREM', KEYS[6], ARGV[1])
end
expire_with_last_lease(KEYS[1], KEYS[2], KEYS[5], now)
local last = redis.call('ZRANGE', KEYS[6], -1, -1, 'WITHSCORES')
if #last == 2 then
  redis.call('PEXPIRE', KEYS[6], tonumber(last[2]) - now)
end
return {'ok'}
