-- Events only (KEYS: the room's stream). ARGV: publish command, the room's channel, the
-- presence event published there, its stored JSON. A join or leave announced outside
-- the presence scripts (put back after the node was reaped), stored all the same.
redis.call(ARGV[1], ARGV[2], ARGV[3])
if events then add_event('e', ARGV[4]) end
return 1
