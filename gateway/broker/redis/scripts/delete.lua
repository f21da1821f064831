-- KEYS: meta, log, tombstones. ARGV: epoch of the offset, seq, moderator, the room's
-- channel, the `deleted` event to publish there, publish command, room ttl ms, the
-- history size. Returns 1 when deleted now, 2 when deleted before, 0 when the room has
-- no such message (another epoch, below the floor the room keeps, or never there).
-- events: ARGV[9] the `deleted` event's JSON, stored when deleted now.
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return 0 end
local floor = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0') - tonumber(ARGV[8]) + 1
if tonumber(ARGV[2]) < floor then return 0 end
if redis.call('HEXISTS', KEYS[3], ARGV[2]) == 1 then
  redis.call('PEXPIRE', KEYS[3], ARGV[7])  -- a write: a retry's WAIT covers the first
  return 2
end
local id = ARGV[2] .. '-0'
local entries = redis.call('XRANGE', KEYS[2], id, id)
if #entries == 0 then return 0 end
local json = entries[1][2][2]
local sender = cjson.decode(json)['from']
local ts = string.match(json, '"ts":(%d+)')  -- as text: a Lua number loses digits
redis.call('XDEL', KEYS[2], id)
redis.call('HSET', KEYS[3], ARGV[2], '{"from":' .. cjson.encode(sender) .. ',"ts":' ..
           (ts or '0') .. ',"by":' .. cjson.encode(ARGV[3]) .. '}')
for _, field in ipairs(redis.call('HKEYS', KEYS[3])) do
  if tonumber(field) < floor then redis.call('HDEL', KEYS[3], field) end  -- trimmed since
end
redis.call('PEXPIRE', KEYS[3], ARGV[7])
redis.call(ARGV[6], ARGV[4], ARGV[5])
if events then add_event('e', ARGV[9]) end
return 1
