-- KEYS: a partition's hints. ARGV: stream, the score read. Removes the hint only if no
-- publisher hinted the stream again since (its score unchanged).
if tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1])) == tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
return 0
