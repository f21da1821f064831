-- KEYS: the room's members, refs, shown and holders (Keys.presence_keys), the name's
-- ban key (its ban refuses the entry), and the room's meta when ARGV[7] is 'read'.
-- ARGV: name key, display, holder entry ("node\nname key"), the room's channel and the
-- presence event to publish there when the name is new ("" for none: the join is
-- announced in the same step, no second round trip), publish command, 'read' or "".
-- Returns 1 when the name was absent from the room everywhere, else 0; with 'read'
-- {that, epoch, seq, members}: the room's newest offset and its members after the
-- entry, what a connection entering is sent, read in the same step. {the ban} ("UNTIL
-- BY"), storing nothing, while the name is banned from the room. events (only with an
-- announcement): ARGV[8] the join's event JSON.
local function entered(added)
  if ARGV[7] ~= 'read' then return added end
  local meta = redis.call('HMGET', KEYS[6], 'epoch', 'seq')
  return {added, meta[1], meta[2], redis.call('SMEMBERS', KEYS[1])}
end
local ban = redis.call('GET', KEYS[5])
if ban then return {ban} end
if redis.call('SADD', KEYS[4], ARGV[3]) == 0 then return entered(0) end
local refs = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
if refs > 1 then return entered(0) end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[1], ARGV[2])
if ARGV[4] ~= '' then redis.call(ARGV[6], ARGV[4], ARGV[5]) end  -- the join, announced
if events then add_event('e', ARGV[8]) end
return entered(1)
