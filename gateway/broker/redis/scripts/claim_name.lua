-- KEYS: name (the skeleton's hash) and, on one Redis, the node's index of names (listed
-- first, in the same step: the reaper finds it if the node dies; on a cluster it lives
-- in another slot and the caller adds it before). ARGV: name key, display, conn, node, new session,
-- given session ("" for none), kick channel, publish command, a node the caller found
-- dead ("" for none).
-- Returns {session, display}; {'taken', DISPLAY} when the name, or a look-alike (another
-- key: no session moves it), is held, DISPLAY being the holder's; {'owner', NODE} when
-- another node holds it exclusively and no valid session was given: the caller checks
-- whether NODE is alive (its key lives in another slot) and, if not, calls again naming
-- it dead ({'owner', NODE, DISPLAY}: the holder's display, for when NODE is alive).
if KEYS[2] then redis.call('SADD', KEYS[2], ARGV[1]) end
local owner = redis.call('HMGET', KEYS[1], 'conn', 'node', 'session', 'display', 'key',
                         'shared')
if owner[6] then return {'taken', owner[4]} end  -- shared (auth)
if owner[1] == ARGV[3] then return {owner[3], owner[4]} end  -- already ours (a re-claim)
if not owner[1] or owner[2] == ARGV[9] then  -- free, or its node is dead (not reaped yet)
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'key', ARGV[1], 'conn', ARGV[3], 'node', ARGV[4],
             'session', ARGV[5], 'display', ARGV[2])
  -- A node only frozen hears this when it wakes: its connection lost the name (a
  -- look-alike's listens on another channel: the reaped mark tells that one).
  if owner[1] and (not owner[5] or owner[5] == ARGV[1]) then
    redis.call(ARGV[8], ARGV[7], KIND_KICK .. owner[1])
  end
  return {ARGV[5], ARGV[2]}
end
local alike = owner[5] and owner[5] ~= ARGV[1]
if alike or ARGV[6] == '' or ARGV[6] ~= owner[3] then
  if owner[2] ~= ARGV[4] and ARGV[9] == '' then return {'owner', owner[2], owner[4]} end
  return {'taken', owner[4]}
end
redis.call('HSET', KEYS[1], 'conn', ARGV[3], 'node', ARGV[4])
redis.call(ARGV[8], ARGV[7], KIND_KICK .. owner[1])
return {owner[3], owner[4]}
