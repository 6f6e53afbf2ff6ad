-- Release one lease, freeing its slot.
--
-- KEYS[1]  leases of the project
-- KEYS[2]  lease details of the project
-- ARGV[1]  session id
-- Result:  1 when the lease was held, 0 when it was not
redis.call('HDEL', KEYS[2], ARGV[1])
return redis.call('ZREM', KEYS[1], ARGV[1])
