-- Charge tokens to a project's sliding window (or only read it), report the window and, for a
-- charge of a session under the "shed" policy, whether that session is to be shed.
--
-- KEYS[1]  token buckets of the project
-- KEYS[2]  spend: sorted set, session id -> tokens it charged in the window (only with ARGV[4])
-- KEYS[3]  spend log: hash, "<second>|<session id>" -> tokens charged then (only with ARGV[4])
-- KEYS[4]  spend index: sorted set, member of the spend log -> its second (only with ARGV[4])
-- KEYS[5]  shed: sorted set, session id of a shed session -> when the mark lapses, ms
-- KEYS[6]  leases of the project (read only: a session without a lease no longer spends)
-- ARGV[1]  tokens to charge now (0: only read)
-- ARGV[2]  tokens per minute of the project
-- ARGV[3]  window length, seconds
-- ARGV[4]  session id charged (absent or empty: no per-session accounting, nobody is shed)
-- ARGV[5]  grace, percent over the budget before anyone is shed
-- Result:  {used, ms_until_free, shed}: tokens in the window after the charge, the ms until
--          enough leave it for usage to drop under the limit (-1 while under it), and 1 when
--          the charged session is to end at its turn boundary (else 0)
--
-- Shedding (docs/quotas.md#over-the-budget): the window's use minus what sessions already
-- shed (or ended) spent in it is the rate the project keeps; while that is over the budget
-- plus the grace, the live sessions that spent the most are shed, the fewest whose spend
-- brings it under the budget, each at its own charge (its turn boundary). The decision and
-- its mark are one script: two replicas never shed for the same overage.
local now = now_ms()
local window_s = tonumber(ARGV[3])
local tokens = tonumber(ARGV[1])
local second = math.floor(now / 1000)
if tokens > 0 then
  redis.call('HINCRBY', KEYS[1], second, tokens)
  redis.call('PEXPIRE', KEYS[1], (window_s + 1) * 1000)
end
local limit = tonumber(ARGV[2])
local used, ms_until_free = token_window(KEYS[1], limit, window_s, now)
local session_id = ARGV[4] or ''
if session_id == '' then
  return {used, ms_until_free, 0}
end

local spend_key, log_key, index_key, shed_key, leases_key = KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
-- Spend that left the window leaves each session's total.
local oldest = '(' .. (second - window_s + 1)
for _, entry in ipairs(redis.call('ZRANGEBYSCORE', index_key, '-inf', oldest)) do
  local spent = redis.call('HGET', log_key, entry)
  if spent then
    local owner = string.sub(entry, string.find(entry, '|', 1, true) + 1)
    if tonumber(redis.call('ZINCRBY', spend_key, -tonumber(spent), owner)) <= 0 then
      redis.call('ZREM', spend_key, owner)
    end
    redis.call('HDEL', log_key, entry)
  end
end
redis.call('ZREMRANGEBYSCORE', index_key, '-inf', oldest)
if tokens > 0 then
  local entry = second .. '|' .. session_id
  redis.call('HINCRBY', log_key, entry, tokens)
  redis.call('ZADD', index_key, second, entry)
  redis.call('ZINCRBY', spend_key, tokens, session_id)
  for _, key in ipairs({log_key, index_key, spend_key}) do
    redis.call('PEXPIRE', key, (window_s + 1) * 1000)
  end
end
redis.call('ZREMRANGEBYSCORE', shed_key, '-inf', now)
local grace = tonumber(ARGV[5])
if used * 100 <= limit * (100 + grace) or redis.call('ZSCORE', shed_key, session_id) then
  return {used, ms_until_free, 0}
end
local flat = redis.call('ZREVRANGE', spend_key, 0, -1, 'WITHSCORES')
local kept, live = used, {}
for i = 1, #flat, 2 do
  local owner, spent = flat[i], tonumber(flat[i + 1])
  local lease_expiry = redis.call('ZSCORE', leases_key, owner)
  if redis.call('ZSCORE', shed_key, owner) or not lease_expiry or tonumber(lease_expiry) <= now then
    kept = kept - spent
  else
    live[#live + 1] = {owner, spent}
  end
end
if kept * 100 <= limit * (100 + grace) then
  return {used, ms_until_free, 0}
end
local excess, covered = kept - limit, 0
for _, pair in ipairs(live) do
  if covered >= excess then
    break
  end
  if pair[1] == session_id then
    redis.call('ZADD', shed_key, now + window_s * 1000, session_id)
    redis.call('PEXPIRE', shed_key, (window_s + 1) * 1000)
    return {used, ms_until_free, 1}
  end
  covered = covered + pair[2]
end
return {used, ms_until_free, 0}
