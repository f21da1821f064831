local events = true
local dropped = 0
local event_stream = KEYS[#KEYS]
local event_bound = tonumber(ARGV[#ARGV])
local event_keys = 1  -- the stream; and before it the hints when there is a score
if ARGV[#ARGV - 1] ~= '' then  -- one Redis: the hint in the same step, before the event
  event_keys = 2
  redis.call('ZADD', KEYS[#KEYS - 1], ARGV[#ARGV - 1], event_stream)
end
local function add_event(...)
  if redis.call('XLEN', event_stream) >= event_bound then
    dropped = dropped + redis.call('XTRIM', event_stream, 'MAXLEN', event_bound - 1)
  end
  redis.call('XADD', event_stream, '*', ...)
end
-- A leave whose name the script finds: `head` is its JSON up to the name (open_event)
local function leave_event(head, shown, id)
  return head .. cjson.encode(shown) .. ',"id":' .. cjson.encode(id) .. '}'
end
local function main()
