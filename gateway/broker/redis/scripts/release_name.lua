-- KEYS: name. ARGV: conn, node. Returns 1 when the node holds the name no more (the
-- caller then takes it off the node's names index), else 0.
if redis.call('HGET', KEYS[1], 'conn') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
elseif redis.call('HEXISTS', KEYS[1], 'c:' .. ARGV[1]) == 1 then
  local gone = function(conn, node) return conn == ARGV[1] end
  if drop_shared(KEYS[1], gone, ARGV[2]) then return 0 end
  return 1
end
return 0
