-- Add to budget counters (tokens or micro-USD per day or month) and read them, at once.
--
-- KEYS[i]      a counter (all of one project: they share its hash tag)
-- ARGV[2i-1]   what to add to KEYS[i] (0: only read it)
-- ARGV[2i]     when KEYS[i] expires, ms since the epoch (the end of its period, plus margin)
-- Result:      {value of KEYS[1] after the addition, value of KEYS[2], ...}
local values = {}
for i, key in ipairs(KEYS) do
  local amount = tonumber(ARGV[2 * i - 1])
  if amount > 0 then
    values[i] = redis.call('INCRBY', key, amount)
    redis.call('PEXPIREAT', key, ARGV[2 * i])
  else
    values[i] = tonumber(redis.call('GET', key) or '0')
  end
end
return values
