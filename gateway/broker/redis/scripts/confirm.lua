-- KEYS: a stream. ARGV: the entries the application confirmed. Removes them, and the
-- stream itself once empty: a room's or a name's stream would otherwise stay for ever
-- as an empty key (XDEL never deletes one; the room's other keys expire), and every
-- sweep would SCAN past it. Atomic with the writes: an event added after it finds no
-- stream and makes a new one.
redis.call('XDEL', KEYS[1], unpack(ARGV))
if redis.call('XLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[1]) end
return 0
