"""Key names and Lua scripts of the Redis broker. Each script is one atomic step.

Keys, under a prefix P (default `chat:`):

    P room:{room}:meta      hash   epoch (random, names this history), seq (last offset)
    P room:{room}:log       stream entries with id `{seq}-0`: field `m` = message JSON
    P presence:{room}       set    display names present in the room (SMEMBERS it)
    P presence:{room}:refs  hash   name key -> how many nodes hold it present
    P presence:{room}:shown hash   name key -> the display name in the set
    P name:{key}            hash   conn, node, session, display: who owns a name
    P id:{n}:{sender}:{id}  string offset of an idempotent send (n = len(sender))
    P node:{id}:alive       string heartbeat; expires after the presence timeout
    P node:{id}:presence    set    "room\\nname key" entries this node holds
    P node:{id}:names       set    name keys this node's connections own
    P node:{id}:reaped      string set when the node was reaped: if it was only stalled,
                                   it finds this on its next beat and re-registers
    P nodes                 set    node ids that may hold entries

Channels: `P ch:room:{room}` (messages and presence), `P ch:user:{key}` (direct
messages and kicks for a name), `P ch:node:{id}` (the node's readiness probe).
A channel message starts with one letter: m (message: offset, newline, JSON),
p (presence JSON), d (direct JSON), k (kick: a connection ref), q (probe token).
"""

from __future__ import annotations


class Keys:
    """The names of every key and channel, under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def meta(self, room: str) -> str:
        return f"{self.prefix}room:{room}:meta"

    def log(self, room: str) -> str:
        return f"{self.prefix}room:{room}:log"

    def presence(self, room: str) -> str:
        return f"{self.prefix}presence:{room}"

    def name(self, key: str) -> str:
        return f"{self.prefix}name:{key}"

    def message_id(self, sender_key: str, message_id: str) -> str:
        return f"{self.prefix}id:{len(sender_key)}:{sender_key}:{message_id}"

    def node(self, node_id: str) -> str:
        return f"{self.prefix}node:{node_id}"

    @property
    def nodes(self) -> str:
        return f"{self.prefix}nodes"

    def room_channel(self, room: str) -> str:
        return f"{self.prefix}ch:room:{room}"

    def user_channel(self, key: str) -> str:
        return f"{self.prefix}ch:user:{key}"

    def node_channel(self, node_id: str) -> str:
        return f"{self.prefix}ch:node:{node_id}"


# KEYS: meta, log, id key ("" for none). ARGV: new epoch, maxlen, message JSON,
# id ttl ms, channel, room ttl ms. Returns {offset, duplicate (0/1)}.
PUBLISH = """
if KEYS[3] ~= '' then
  local seen = redis.call('GET', KEYS[3])
  if seen then return {seen, 1} end
end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])  -- a log without its meta belongs to a lost epoch
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local offset = epoch .. '-' .. seq
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], seq .. '-0', 'm', ARGV[3])
redis.call('PUBLISH', ARGV[5], 'm' .. offset .. '\\n' .. ARGV[3])
if KEYS[3] ~= '' then redis.call('SET', KEYS[3], offset, 'PX', ARGV[4]) end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return {offset, 0}
"""

# KEYS: presence set, refs, shown, node presence set. ARGV: name key, display,
# entry ("room\nname key": the same for every spelling of the name), the room's
# channel and the presence event to publish there when the name is new ("" for none:
# the join is announced in the same step, no second round trip).
# Returns 1 when the name was absent from the room everywhere, else 0.
PRESENCE_ADD = """
if redis.call('SADD', KEYS[4], ARGV[3]) == 0 then return 0 end
local refs = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
if refs > 1 then return 0 end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[1], ARGV[2])
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[5]) end  -- the join, announced
return 1
"""

# The same keys and arguments. Returns 1 when the name is now absent everywhere.
PRESENCE_REMOVE = """
if redis.call('SREM', KEYS[4], ARGV[3]) == 0 then return 0 end
local refs = redis.call('HINCRBY', KEYS[2], ARGV[1], -1)
if refs > 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
local shown = redis.call('HGET', KEYS[3], ARGV[1]) or ARGV[2]
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('SREM', KEYS[1], shown)
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[5]) end  -- the leave, announced
return 1
"""

# KEYS: name, this node's names set. ARGV: name key, display, conn, node, new session,
# given session ("" for none), node key prefix, kick channel.
# Returns {session, display} or {} when the name is taken.
CLAIM_NAME = """
if redis.call('HEXISTS', KEYS[1], 'shared') == 1 then return {} end  -- shared (auth)
local owner = redis.call('HMGET', KEYS[1], 'conn', 'node', 'session', 'display')
if owner[1] == ARGV[3] then return {owner[3], owner[4]} end  -- already ours (a re-claim)
local free = not owner[1]
if not free and redis.call('EXISTS', ARGV[7] .. owner[2] .. ':alive') == 0 then
  free = true  -- its node is dead: the reaper has not caught up yet
end
if free then
  redis.call('HSET', KEYS[1], 'conn', ARGV[3], 'node', ARGV[4], 'session', ARGV[5],
             'display', ARGV[2])
  redis.call('SADD', KEYS[2], ARGV[1])
  return {ARGV[5], ARGV[2]}
end
if ARGV[6] == '' or ARGV[6] ~= owner[3] then return {} end
if owner[2] ~= ARGV[4] then
  redis.call('SREM', ARGV[7] .. owner[2] .. ':names', ARGV[1])
end
redis.call('HSET', KEYS[1], 'conn', ARGV[3], 'node', ARGV[4])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[8], 'k' .. owner[1])
return {owner[3], owner[4]}
"""

# A name shared by the connections of an authenticated user: the hash holds 'shared',
# 'session', 'display' and one field 'c:<conn>' = node per connection.
# The same keys and arguments as CLAIM_NAME (the given session and the kick channel are
# unused). Returns {session, display}, or {} when an exclusive owner holds the name.
CLAIM_SHARED = """
local owner = redis.call('HGET', KEYS[1], 'node')
if owner then
  if redis.call('EXISTS', ARGV[7] .. owner .. ':alive') == 1 then return {} end
  redis.call('DEL', KEYS[1])  -- its node is dead: the reaper has not caught up yet
end
redis.call('HSETNX', KEYS[1], 'session', ARGV[5])
redis.call('HSETNX', KEYS[1], 'display', ARGV[2])
redis.call('HSET', KEYS[1], 'shared', '1', 'c:' .. ARGV[3], ARGV[4])
redis.call('SADD', KEYS[2], ARGV[1])
return redis.call('HMGET', KEYS[1], 'session', 'display')
"""

# Shared by RELEASE_NAME and REAP_NODE: drop a shared name's connections for which
# `gone(conn, node)` holds; the name is deleted once none is left. Returns whether
# one of `node`'s connections is still there.
_DROP_SHARED = """
local function drop_shared(name, gone, node)
  local fields = redis.call('HGETALL', name)
  local left, mine = 0, false
  for i = 1, #fields, 2 do
    if string.sub(fields[i], 1, 2) == 'c:' then
      if gone(string.sub(fields[i], 3), fields[i + 1]) then
        redis.call('HDEL', name, fields[i])
      else
        left = left + 1
        if fields[i + 1] == node then mine = true end
      end
    end
  end
  if left == 0 then redis.call('DEL', name) end
  return mine
end
"""

# KEYS: name, this node's names set. ARGV: name key, conn, node.
RELEASE_NAME = (
    _DROP_SHARED
    + """
if redis.call('HGET', KEYS[1], 'conn') == ARGV[2] then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[1])
elseif redis.call('HEXISTS', KEYS[1], 'c:' .. ARGV[2]) == 1 then
  local gone = function(conn, node) return conn == ARGV[2] end
  if not drop_shared(KEYS[1], gone, ARGV[3]) then redis.call('SREM', KEYS[2], ARGV[1]) end
end
return 0
"""
)

# KEYS: recipient name. ARGV: recipient channel, sender channel ("" when the same), JSON.
# Returns 0 when the recipient is not online.
DIRECT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('PUBLISH', ARGV[1], 'd' .. ARGV[3])
if ARGV[2] ~= '' then redis.call('PUBLISH', ARGV[2], 'd' .. ARGV[3]) end
return 1
"""

# KEYS: nodes set. ARGV: dead node id, key prefix. Removes everything the dead node
# held and announces each leave once (the node leaves `nodes` in the same step, so a
# second reaper finds nothing). Returns the number of leaves announced.
REAP_NODE = (
    _DROP_SHARED
    + """
local node = ARGV[1]
local p = ARGV[2]
if redis.call('SREM', KEYS[1], node) == 0 then return 0 end
if redis.call('EXISTS', p .. 'node:' .. node .. ':alive') == 1 then
  redis.call('SADD', KEYS[1], node)
  return 0
end
local leaves = 0
local entries = redis.call('SMEMBERS', p .. 'node:' .. node .. ':presence')
for _, entry in ipairs(entries) do
  local room, key = string.match(entry, '^([^\\n]*)\\n(.*)$')
  local refs = redis.call('HINCRBY', p .. 'presence:' .. room .. ':refs', key, -1)
  if refs <= 0 then
    redis.call('HDEL', p .. 'presence:' .. room .. ':refs', key)
    local shown = redis.call('HGET', p .. 'presence:' .. room .. ':shown', key) or key
    redis.call('HDEL', p .. 'presence:' .. room .. ':shown', key)
    redis.call('SREM', p .. 'presence:' .. room, shown)
    redis.call('PUBLISH', p .. 'ch:room:' .. room, 'p' .. cjson.encode(
      {room = room, event = 'leave', name = shown}))
    leaves = leaves + 1
  end
end
for _, key in ipairs(redis.call('SMEMBERS', p .. 'node:' .. node .. ':names')) do
  local name = p .. 'name:' .. key
  if redis.call('HGET', name, 'node') == node then
    redis.call('DEL', name)
  elseif redis.call('HEXISTS', name, 'shared') == 1 then
    drop_shared(name, function(conn, holder) return holder == node end, '')
  end
end
redis.call('DEL', p .. 'node:' .. node .. ':presence', p .. 'node:' .. node .. ':names')
redis.call('SET', p .. 'node:' .. node .. ':reaped', '1', 'EX', 3600)  -- if it was alive
return leaves
"""
)
