-- KEYS: name, [the node's names index]. ARGV: conn, node, [the name's key]. Returns 1
-- when the node holds the name no more, else 0. With the index (one Redis: same slot)
-- the name is taken off it here; else the caller takes it off when this returns 1.
local function released()
  if KEYS[2] then redis.call('SREM', KEYS[2], ARGV[3]) end
  return 1
end
if redis.call('HGET', KEYS[1], 'conn') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return released()
elseif redis.call('HEXISTS', KEYS[1], 'c:' .. ARGV[1]) == 1 then
  local gone = function(conn, node) return conn == ARGV[1] end
  if drop_shared(KEYS[1], gone, ARGV[2]) then return 0 end
  return released()
end
return 0
