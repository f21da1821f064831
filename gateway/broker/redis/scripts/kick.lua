-- KEYS: the room's presence keys, the name's ban key. ARGV: name key, room, the room's
-- channel, publish command, the ban ("UNTIL BY"; "" for none), its lifetime in ms. Bans
-- first (a rejoin racing the removal is refused), then takes the name out of the room
-- for every node that holds it, and announces its leave once (the nodes' own removals
-- then find nothing left). Returns 1 if it was present. events: ARGV[7] the leave's JSON
-- up to its name (open_event), ARGV[8] its id, ARGV[9] the `removed` event's JSON.
if ARGV[5] ~= '' then redis.call('SET', KEYS[5], ARGV[5], 'PX', ARGV[6]) end
local suffix = '\n' .. ARGV[1]
local held = false
for _, entry in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  if string.sub(entry, -#suffix) == suffix then
    redis.call('SREM', KEYS[4], entry)
    held = true
  end
end
if not held then
  if events then add_event('e', ARGV[9]) end
  return 0
end
redis.call('HDEL', KEYS[2], ARGV[1])
local shown = redis.call('HGET', KEYS[3], ARGV[1]) or ARGV[1]
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('SREM', KEYS[1], shown)
redis.call(ARGV[4], ARGV[3],
  KIND_PRESENCE .. cjson.encode({room = ARGV[2], event = 'leave', name = shown}))
if events then
  add_event('e', leave_event(ARGV[7], shown, ARGV[8]))
  add_event('e', ARGV[9])
end
return 1
