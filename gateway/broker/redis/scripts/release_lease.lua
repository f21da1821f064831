-- KEYS: the lease. ARGV: holder. Deletes it only when the holder holds it.
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
