-- Count one use of a relay-issued token.
--
-- KEYS[1]  use counter of the token
-- ARGV[1]  max uses of the token
-- ARGV[2]  expiry of the token and of its counter, ms since the epoch
-- Result:  uses left after this one, or -1 when none were left or the token has expired
local now = now_ms()
local expires_at = tonumber(ARGV[2])
if expires_at <= now then
  return -1
end
local max_uses = tonumber(ARGV[1])
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used >= max_uses then
  return -1
end
used = redis.call('INCR', KEYS[1])
redis.call('PEXPIREAT', KEYS[1], expires_at)
return max_uses - used
