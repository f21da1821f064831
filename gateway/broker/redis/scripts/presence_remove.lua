-- The keys and arguments of PRESENCE_ADD without the ban key, the meta and the read
-- flag (events: ARGV[7] the leave's). Returns 1 when the name is
-- now absent everywhere.
if redis.call('SREM', KEYS[4], ARGV[3]) == 0 then return 0 end
local refs = redis.call('HINCRBY', KEYS[2], ARGV[1], -1)
if refs > 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
local shown = redis.call('HGET', KEYS[3], ARGV[1]) or ARGV[2]
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('SREM', KEYS[1], shown)
if ARGV[4] ~= '' then redis.call(ARGV[6], ARGV[4], ARGV[5]) end  -- the leave, announced
if events then add_event('e', ARGV[7]) end
return 1
