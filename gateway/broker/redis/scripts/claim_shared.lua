-- A name shared by the connections of an authenticated user: the hash holds 'shared',
-- 'session', 'display' and one field 'c:<conn>' = node per connection.
-- The same keys and arguments as CLAIM_NAME (the given session and the kick channel are
-- unused). Returns {session, display}, {'taken', DISPLAY} when an exclusive owner holds
-- the name or another user a look-alike, or {'owner', NODE} as CLAIM_NAME does.
if KEYS[2] then redis.call('SADD', KEYS[2], ARGV[1]) end
local held = redis.call('HMGET', KEYS[1], 'node', 'key', 'display')
local owner = held[1]
if owner then
  if owner ~= ARGV[9] then
    if ARGV[9] == '' then return {'owner', owner, held[3]} end
    return {'taken', held[3]}
  end
  redis.call('DEL', KEYS[1])  -- its node is dead: the reaper has not caught up yet
elseif held[2] and held[2] ~= ARGV[1] then
  return {'taken', held[3]}  -- a look-alike's connections share it
end
redis.call('HSETNX', KEYS[1], 'key', ARGV[1])
redis.call('HSETNX', KEYS[1], 'session', ARGV[5])
redis.call('HSETNX', KEYS[1], 'display', ARGV[2])
redis.call('HSET', KEYS[1], 'shared', '1', 'c:' .. ARGV[3], ARGV[4])
return redis.call('HMGET', KEYS[1], 'session', 'display')
