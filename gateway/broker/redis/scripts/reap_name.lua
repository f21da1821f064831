-- KEYS: name. ARGV: dead node. Drops what the dead node held of the name.
if redis.call('HGET', KEYS[1], 'node') == ARGV[1] then
  redis.call('DEL', KEYS[1])
elseif redis.call('HEXISTS', KEYS[1], 'shared') == 1 then
  drop_shared(KEYS[1], function(conn, holder) return holder == ARGV[1] end, '')
end
return 0
