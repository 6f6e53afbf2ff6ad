-- Helpers prepended to every other script of this directory (`load_script` in redis_store.py).
-- KEYS: none. ARGV: none. Result: none; it only defines the local functions below.
--
-- Layout of one project's keys (every one carries the {project} hash tag: one Cluster slot):
--   leases   sorted set: member = session id, score = lease expiry (ms since the epoch)
--   details  hash: session id -> JSON {"user": string or null, "started_at": unix time}
--   tokens   hash: unix second -> tokens charged during that second
--   released sorted set: member = session id of a released lease, score = when the mark
--            expires (ms): acquire and renew never take such a session's slot again
--   provisional  sorted set: the leases of `leases` taken while their session's setup was on
--            its way (keeper.py), same scores, until the setup is accepted
--   counted  sorted set: the session ids of `leases` that are also in their user's record
--            below, same scores. Every lease this version writes is in it (with or without a
--            user); one written by an older relay version (no per-user record) is not.
--   user:<user id>  sorted set, one per user: the user's session ids, score = lease expiry,
--            so the per-user check is a ZCARD, not a walk over every lease of the project.
--            Expired members leave when that user's key is next written or checked, and the
--            key expires with the user's last lease.
--
-- Rolling deploys: a relay of an older version writes leases and details only. Its leases
-- are missing from `counted` and from the per-user record for as long as they live (they are
-- renewed by the old relay's own script; none survives it by more than one lease TTL). While
-- `leases` holds more ids than `counted`, the per-user check falls back to counting the user's
-- leases from their details (O(n), exact, as before): a user never exceeds the cap because a
-- replica is older, it only costs the old price until the old leases are gone.

-- Milliseconds since the epoch by the Redis server's clock, so relay replicas with skewed
-- clocks still agree on when a lease expires and which second a token belongs to.
local function now_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

-- Forget the leases whose expiry has passed: their relay stopped renewing them. They leave
-- `counted` here; each user's record drops them by score when it is next touched.
local function purge_expired_leases(leases_key, details_key, counted_key, now)
  local expired = redis.call('ZRANGEBYSCORE', leases_key, '-inf', now)
  for _, session_id in ipairs(expired) do
    redis.call('HDEL', details_key, session_id)
  end
  if #expired > 0 then
    redis.call('ZREMRANGEBYSCORE', leases_key, '-inf', now)
  end
  redis.call('ZREMRANGEBYSCORE', counted_key, '-inf', now)
end

-- Leases the user holds now (after purge_expired_leases). O(log n) from the user's record;
-- O(n) from the details only while leases of an older relay version are live (see above).
local function user_leases_held(leases_key, details_key, counted_key, user_key, user, now)
  redis.call('ZREMRANGEBYSCORE', user_key, '-inf', now)
  if redis.call('ZCARD', leases_key) <= redis.call('ZCARD', counted_key) then
    return redis.call('ZCARD', user_key)
  end
  local held = 0
  for _, details in ipairs(redis.call('HVALS', details_key)) do
    if cjson.decode(details).user == user then
      held = held + 1
    end
  end
  return held
end

-- Hold (or extend) a lease until `expiry`, in the project's keys and its user's record.
-- `user_key` is nil for a session without a user.
local function record_lease(leases_key, details_key, counted_key, user_key, session_id,
                            details, expiry, now)
  redis.call('ZADD', leases_key, expiry, session_id)
  redis.call('ZADD', counted_key, expiry, session_id)
  if details then
    redis.call('HSET', details_key, session_id, details)
  end
  if user_key then
    redis.call('ZREMRANGEBYSCORE', user_key, '-inf', now)
    redis.call('ZADD', user_key, expiry, session_id)
    local last = redis.call('ZRANGE', user_key, -1, -1, 'WITHSCORES')
    redis.call('PEXPIRE', user_key, tonumber(last[2]) - now)
  end
end

-- Forget the release marks that have done their job (older than one lease TTL).
local function purge_expired_releases(released_key, now)
  redis.call('ZREMRANGEBYSCORE', released_key, '-inf', now)
end

-- Whether the session's lease was released (its admission given up, or its session ended).
local function was_released(released_key, session_id, now)
  local until_ms = redis.call('ZSCORE', released_key, session_id)
  return until_ms and tonumber(until_ms) > now
end

-- Let the lease keys vanish with their last lease, so idle projects leave nothing behind.
local function expire_with_last_lease(leases_key, details_key, counted_key, now)
  local last = redis.call('ZRANGE', leases_key, -1, -1, 'WITHSCORES')
  if #last == 2 then
    local ttl = tonumber(last[2]) - now
    redis.call('PEXPIRE', leases_key, ttl)
    redis.call('PEXPIRE', details_key, ttl)
    redis.call('PEXPIRE', counted_key, ttl)
  end
end

-- The sliding window ending now: tokens used in it, and the ms until enough of them leave it
-- for usage to drop under `limit` (-1 while under the limit). Bucket `s` leaves the window
-- `window_s` seconds after it began; buckets already gone are deleted on the way.
local function token_window(tokens_key, limit, window_s, now)
  local oldest = math.floor(now / 1000) - window_s + 1
  local flat = redis.call('HGETALL', tokens_key)
  local buckets, used = {}, 0
  for i = 1, #flat, 2 do
    local second, tokens = tonumber(flat[i]), tonumber(flat[i + 1])
    if second < oldest then
      redis.call('HDEL', tokens_key, flat[i])
    else
      buckets[#buckets + 1] = {second, tokens}
      used = used + tokens
    end
  end
  if used < limit then
    return used, -1
  end
  table.sort(buckets, function(a, b) return a[1] < b[1] end)
  local must_free, freed = used - limit + 1, 0
  for _, bucket in ipairs(buckets) do
    freed = freed + bucket[2]
    if freed >= must_free then
      return used, (bucket[1] + window_s) * 1000 - now
    end
  end
  -- Only a zero budget gets here: it never frees, so the answer is "look again after a window".
  return used, window_s * 1000
end
