-- Charge tokens to a project's sliding window (or only read it), and report the window.
--
-- KEYS[1]  token buckets of the project
-- ARGV[1]  tokens to charge now (0: only read)
-- ARGV[2]  tokens per minute of the project
-- ARGV[3]  window length, seconds
-- Result:  {used, ms_until_free}: tokens in the window after the charge, and the ms until
--          enough leave it for usage to drop under the limit (-1 while under it)
local now = now_ms()
local window_s = tonumber(ARGV[3])
if tonumber(ARGV[1]) > 0 then
  redis.call('HINCRBY', KEYS[1], math.floor(now / 1000), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], (window_s + 1) * 1000)
end
local used, ms_until_free = token_window(KEYS[1], tonumber(ARGV[2]), window_s, now)
return {used, ms_until_free}
