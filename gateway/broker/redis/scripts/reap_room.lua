-- KEYS: the room's presence keys. ARGV: dead node, room, the room's channel, publish
-- command. Removes every name the node held in the room and announces each leave once
-- (a second reaper finds no holder entry left). Returns the number of leaves. events:
-- ARGV[5] a leave's JSON up to its name (open_event), ARGV[6] the prefix of their ids.
local leaves = 0
local mine = ARGV[1] .. '\n'
for _, entry in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  if string.sub(entry, 1, #mine) == mine then
    redis.call('SREM', KEYS[4], entry)
    local key = string.sub(entry, #mine + 1)
    local refs = redis.call('HINCRBY', KEYS[2], key, -1)
    if refs <= 0 then
      redis.call('HDEL', KEYS[2], key)
      local shown = redis.call('HGET', KEYS[3], key) or key
      redis.call('HDEL', KEYS[3], key)
      redis.call('SREM', KEYS[1], shown)
      redis.call(ARGV[4], ARGV[3], KIND_PRESENCE .. cjson.encode(
        {room = ARGV[2], event = 'leave', name = shown}))
      leaves = leaves + 1
      if events then add_event('e', leave_event(ARGV[5], shown, ARGV[6] .. '.' .. leaves)) end
    end
  end
end
return leaves
