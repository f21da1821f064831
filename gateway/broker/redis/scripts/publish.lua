-- KEYS: meta, log, tombstones, and the id key when the send has an id (no empty key in
-- its place: on a cluster every key, even "", must be in the script's slot). ARGV: new
-- epoch, maxlen, message JSON, id ttl ms, channel, room ttl ms, publish command.
-- Returns {offset, duplicate (0/1)}. events: ARGV[8] the event's JSON but its offset.
local id_key = KEYS[4]
if events and #KEYS - event_keys == 3 then id_key = nil end  -- no id key, events' keys
if id_key then
  local seen = redis.call('GET', id_key)
  if seen then
    -- a write all the same: a WAIT after it covers the first one's replication too
    redis.call('PEXPIRE', id_key, ARGV[4])
    return {seen, 1}
  end
end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2], KEYS[3])  -- a log without its meta belongs to a lost epoch
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local offset = epoch .. '-' .. seq
-- Trimmed by sequence number, not count: a deleted entry does not make the log keep
-- an older one, and readers know the floor (seq - maxlen + 1) without asking.
local floor = seq - tonumber(ARGV[2]) + 1
if floor < 1 then floor = 1 end
redis.call('XADD', KEYS[2], 'MINID', '~', floor, seq .. '-0', 'm', ARGV[3])
redis.call(ARGV[7], ARGV[5], KIND_MESSAGE .. offset .. '\n' .. ARGV[3])
if events then add_event('e', ARGV[8], 'o', offset) end
if id_key then redis.call('SET', id_key, offset, 'PX', ARGV[4]) end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
redis.call('PEXPIRE', KEYS[3], ARGV[6])  -- the tombstones live as long as their log
return {offset, 0}
