-- KEYS: recipient name, its DM budget. ARGV: recipient channel, JSON, publish command,
-- recipient key, the budget's rate (DMs per second; 0: none) and burst. The budget is a
-- token bucket (fields `tokens` and `at`, Redis's own TIME in ms, so every node counts
-- alike) that expires once it would be full again. Returns 1 when published, 0 when the
-- recipient is not online (the hash is absent, or a look-alike holds it), or minus the
-- milliseconds until the budget has room again (nothing published). The sender's own
-- copy is published by the caller: the sender's channel lives in another slot. events:
-- ARGV[7] the DM's event JSON, stored in the recipient's stream once published.
if redis.call('HGET', KEYS[1], 'key') ~= ARGV[4] then return 0 end
local rate = tonumber(ARGV[5])
if rate > 0 then
  local burst = tonumber(ARGV[6])
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  local held = redis.call('HMGET', KEYS[2], 'tokens', 'at')
  local tokens = tonumber(held[1]) or burst
  local at = tonumber(held[2]) or now
  if now > at then tokens = math.min(burst, tokens + (now - at) * rate / 1000) end
  if tokens < 1 then return -math.max(1, math.ceil((1 - tokens) * 1000 / rate)) end
  redis.call('HSET', KEYS[2], 'tokens', tostring(tokens - 1), 'at', now)
  redis.call('PEXPIRE', KEYS[2], math.ceil(burst * 1000 / rate) + 1000)
end
redis.call(ARGV[3], ARGV[1], KIND_DIRECT .. ARGV[2])
if events then add_event('e', ARGV[7]) end
return 1
