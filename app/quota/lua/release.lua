-- Release one lease, freeing its slot, and mark the session released for one lease TTL.
-- The mark makes the outcome right whichever runs first when a stalled Redis resumes: this
-- release, or an acquire (or renew) of the same session sent before it: see acquire.lua.
--
-- KEYS[1]  leases of the project
-- KEYS[2]  lease details of the project
-- KEYS[3]  release marks of the project
-- KEYS[4]  counted leases of the project
-- KEYS[5]  provisional leases of the project
-- KEYS[6]  the user's leases (only when the session has a user)
-- ARGV[1]  session id
-- ARGV[2]  how long the mark lasts (the lease time to live), ms
-- Result:  1 when the lease was held, 0 when it was not
local now = now_ms()
purge_expired_releases(KEYS[3], now)
local mark_until = now + tonumber(ARGV[2])
redis.call('ZADD', KEYS[3], mark_until, ARGV[1])
local last = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[3], tonumber(last[2]) - now)
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
if KEYS[6] then
  redis.call('ZREM', KEYS[6], ARGV[1])
end
return redis.call('ZREM', KEYS[1], ARGV[1])
