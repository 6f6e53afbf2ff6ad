-- How many live leases a project holds, for the usage gauges: sessions.lua's count without
-- reading every lease's details.
--
-- KEYS[1]  leases of the project
-- KEYS[2]  lease details of the project
-- KEYS[3]  the project's counted sessions
-- ARGV:    none
-- Result:  the number of live leases
purge_expired_leases(KEYS[1], KEYS[2], KEYS[3], now_ms())
return redis.call('ZCARD', KEYS[1])
