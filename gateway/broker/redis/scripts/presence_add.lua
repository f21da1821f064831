-- KEYS: the room's members, refs, shown and holders (Keys.presence_keys), and the
-- name's ban key when a ban is to refuse the entry. ARGV: name key, display, holder
-- entry ("node\nname key"), the room's channel and the presence event to publish there
-- when the name is new ("" for none: the join is announced in the same step, no second
-- round trip), publish command.
-- Returns 1 when the name was absent from the room everywhere, else 0; {the ban} ("UNTIL
-- BY"), storing nothing, while the name is banned from the room. events (only with an
-- announcement): ARGV[7] the join's event JSON.
local ban_key = KEYS[5]
if events and #KEYS - event_keys == 4 then ban_key = nil end  -- no ban key, events' keys
if ban_key then
  local ban = redis.call('GET', ban_key)
  if ban then return {ban} end
end
if redis.call('SADD', KEYS[4], ARGV[3]) == 0 then return 0 end
local refs = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
if refs > 1 then return 0 end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[1], ARGV[2])
if ARGV[4] ~= '' then redis.call(ARGV[6], ARGV[4], ARGV[5]) end  -- the join, announced
if events then add_event('e', ARGV[7]) end
return 1
