-- KEYS: the lease. ARGV: holder, ttl ms. Takes a free lease or renews the holder's own;
-- 1 when held now, 0 when another holds it.
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
