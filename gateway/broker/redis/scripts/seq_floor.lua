-- KEYS: the room's meta. ARGV: epoch, sequence number a node delivered.
-- After a failover the promoted replica may lack the newest writes, which nodes may have
-- delivered live (never acked: their WAIT failed); the room's numbering must not hand
-- those offsets out again, or the nodes would drop the new messages as repeats.
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return 0 end
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
if seq >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'seq', ARGV[2])
return 1
