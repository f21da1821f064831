"""Key names and Lua scripts of the Redis broker. Each script is one atomic step.

Every key of a room carries the room's hash tag `{room}`, every key of a name the
skeleton of the name (`{S}`: names that look alike share one, see gateway/names.py;
a `}` in it written %7D, a `%` %25),
every key of a node the node's: on a Redis Cluster each script then touches one
slot (a script or multi-key command across slots is refused there), and on one Redis
nothing changes. Keys, under a prefix P (default `chat:`; it may hold no brace):

    P room:{R}:meta      hash   epoch (random, names this history), seq (last offset)
    P room:{R}:log       stream entries with id `{seq}-0`: field `m` = message JSON
    P room:{R}:members   set    display names present in the room (SMEMBERS it)
    P room:{R}:refs      hash   name key -> how many nodes hold it present
    P room:{R}:shown     hash   name key -> the display name in the set
    P room:{R}:holders   set    "node\nname key": which node holds which name here
    P room:{R}:id:{n}:{sender}:{id}  string  offset of an idempotent send (n = len(sender))
    P room:{R}:deleted   hash   seq -> {"from", "ts", "by"}: a deleted message's tombstone
                                (its stream entry is gone: XDEL)
    P room:{R}:ban:{K}   string "UNTIL BY": when name key K's ban from the room ends
                                (epoch ms) and who banned it; expires then
    P name:{S}           hash   key, conn, node, session, display: which name (its key K)
                                owns skeleton S, and who owns that name; a look-alike
                                (another K of the same S) is refused while it is held
    P name:{S}:dm-budget hash  tokens, at (ms): the direct messages the name holding S
                                may still receive (--dm-recipient-rate); expires once full
    P node:{N}:alive     string heartbeat; expires after the presence timeout
    P node:{N}:rooms     set    rooms where the node may hold presence (the reaper's index)
    P node:{N}:names     set    name keys the node's connections may own (the same)
    P node:{N}:reaped    string set when the node was reaped: if it was only stalled,
                                it finds this on its next beat and re-registers
    P node:{N}:status    string JSON: the node's status for the console, written by each
                                heartbeat, expiring with it (gateway/node_status.py)
    P nodes              set    node ids that may hold entries
    P audit              list   JSON: the newest moderation actions, newest first (capped)

Channels: `P ch:room:{R}` (messages and presence), `P ch:user:{S}K` (direct messages
and kicks for name key K of skeleton S), `P ch:node:{N}` (the
node's readiness probe), each in the slot of its owner's keys, so that a script can
publish on it (SPUBLISH, on a cluster, only reaches a shard channel of the slot the
script runs in). A channel message starts with one letter, its kind
(kinds.Kind: message, presence, deleted, direct, kick, removed, disconnect,
probe); the scripts that publish get the letters as Lua locals generated from it.
The scripts take the publish command as an argument: PUBLISH on one Redis, SPUBLISH
on a cluster. Those marked `events` also store the event they cause for the
application, run through event_log.EventScript (its keys and extra arguments:
event_scripts).
"""

from __future__ import annotations

from gateway.broker.redis.kinds import LUA_KINDS
from gateway.names import key_skeleton


def _tag(text: str) -> str:
    """`text` as a hash tag's content: Redis ends a tag at its first `}` (and hashes the
    whole key when the tag is empty), so `}` is written %7D (and `%` %25)."""
    return text.replace("%", "%25").replace("}", "%7D")


class Keys:
    """The names of every key and channel, under one prefix."""

    def __init__(self, prefix: str) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError(f"a Redis key prefix may not hold a brace: {prefix!r}")
        self.prefix = prefix

    def room(self, room: str) -> str:
        """The start of every key of `room` (its hash tag included)."""
        return f"{self.prefix}room:{{{room}}}:"

    def meta(self, room: str) -> str:
        return self.room(room) + "meta"

    def log(self, room: str) -> str:
        return self.room(room) + "log"

    def presence(self, room: str) -> str:
        """The room's set of present display names."""
        return self.room(room) + "members"

    def presence_keys(self, room: str) -> list[str]:
        """The presence scripts' keys: members, refs, shown, holders."""
        start = self.room(room)
        return [start + "members", start + "refs", start + "shown", start + "holders"]

    def message_id(self, room: str, sender_key: str, message_id: str) -> str:
        return f"{self.room(room)}id:{len(sender_key)}:{sender_key}:{message_id}"

    def deleted(self, room: str) -> str:
        """The room's tombstones: seq -> who sent it, when, and who deleted it."""
        return self.room(room) + "deleted"

    def ban(self, room: str, key: str) -> str:
        """Name key `key`'s ban from `room` (absent: none)."""
        return f"{self.room(room)}ban:{key}"

    def name(self, key: str) -> str:
        """The hash of name key `key`'s skeleton: whoever holds that name or a look-alike."""
        return f"{self.prefix}name:{{{_tag(key_skeleton(key))}}}"

    def dm_budget(self, key: str) -> str:
        """The direct messages name key `key` may still receive (a token bucket)."""
        return f"{self.name(key)}:dm-budget"

    def node(self, node_id: str) -> str:
        """The start of every key of node `node_id`: add `:alive`, `:rooms`, ..."""
        return f"{self.prefix}node:{{{node_id}}}"

    @property
    def nodes(self) -> str:
        return f"{self.prefix}nodes"

    @property
    def audit(self) -> str:
        """The recent moderation actions (gateway/broker/redis/console.py)."""
        return f"{self.prefix}audit"

    def room_channel(self, room: str) -> str:
        return f"{self.prefix}ch:room:{{{room}}}"

    def user_channel(self, key: str) -> str:
        """Name key `key`'s channel, in the slot of its name hash (the skeleton's tag)."""
        return f"{self.prefix}ch:user:{{{_tag(key_skeleton(key))}}}{key}"

    def user_of_channel(self, channel: str) -> str:
        """The name key a user channel belongs to."""
        return channel.removeprefix(f"{self.prefix}ch:user:{{").partition("}")[2]

    def node_channel(self, node_id: str) -> str:
        return f"{self.prefix}ch:node:{{{node_id}}}"


# KEYS: meta, log, tombstones, and the id key when the send has an id (no empty key in
# its place: on a cluster every key, even "", must be in the script's slot). ARGV: new
# epoch, maxlen, message JSON, id ttl ms, channel, room ttl ms, publish command.
# Returns {offset, duplicate (0/1)}. events: ARGV[8] the event's JSON but its offset.
PUBLISH = (
    LUA_KINDS
    + """
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
redis.call(ARGV[7], ARGV[5], KIND_MESSAGE .. offset .. '\\n' .. ARGV[3])
if events then add_event('e', ARGV[8], 'o', offset) end
if id_key then redis.call('SET', id_key, offset, 'PX', ARGV[4]) end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
redis.call('PEXPIRE', KEYS[3], ARGV[6])  -- the tombstones live as long as their log
return {offset, 0}
"""
)

# KEYS: the room's meta. ARGV: epoch, sequence number a node delivered.
# After a failover the promoted replica may lack the newest writes, which nodes may have
# delivered live (never acked: their WAIT failed); the room's numbering must not hand
# those offsets out again, or the nodes would drop the new messages as repeats.
SEQ_FLOOR = """
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return 0 end
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
if seq >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'seq', ARGV[2])
return 1
"""

# KEYS: the room's members, refs, shown and holders (Keys.presence_keys), and the
# name's ban key when a ban is to refuse the entry. ARGV: name key, display, holder
# entry ("node\nname key"), the room's channel and the presence event to publish there
# when the name is new ("" for none: the join is announced in the same step, no second
# round trip), publish command.
# Returns 1 when the name was absent from the room everywhere, else 0; {the ban} ("UNTIL
# BY"), storing nothing, while the name is banned from the room. events (only with an
# announcement): ARGV[7] the join's event JSON.
PRESENCE_ADD = """
local ban_key = KEYS[5]
if events and #KEYS - event_keys == 4 then ban_key = nil end  -- no ban key, events' keys
if ban_key then
  local ban = redis.call('GET', ban_key)
  if ban then return {ban} end
end
if redis.call('SADD', KEYS[4], ARGV[3]) == 0 then return 0 end
local refs = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
if refs > 1 then return 0 end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[1], ARGV[2])
if ARGV[4] ~= '' then redis.call(ARGV[6], ARGV[4], ARGV[5]) end  -- the join, announced
if events then add_event('e', ARGV[7]) end
return 1
"""

# The same keys and arguments (events: ARGV[7] the leave's). Returns 1 when the name is
# now absent everywhere.
PRESENCE_REMOVE = """
if redis.call('SREM', KEYS[4], ARGV[3]) == 0 then return 0 end
local refs = redis.call('HINCRBY', KEYS[2], ARGV[1], -1)
if refs > 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
local shown = redis.call('HGET', KEYS[3], ARGV[1]) or ARGV[2]
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('SREM', KEYS[1], shown)
if ARGV[4] ~= '' then redis.call(ARGV[6], ARGV[4], ARGV[5]) end  -- the leave, announced
if events then add_event('e', ARGV[7]) end
return 1
"""

# KEYS: the room's presence keys. ARGV: dead node, room, the room's channel, publish
# command. Removes every name the node held in the room and announces each leave once
# (a second reaper finds no holder entry left). Returns the number of leaves. events:
# ARGV[5] a leave's JSON up to its name (open_event), ARGV[6] the prefix of their ids.
REAP_ROOM = (
    LUA_KINDS
    + """
local leaves = 0
local mine = ARGV[1] .. '\\n'
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
"""
)

# KEYS: name (the skeleton's hash). ARGV: name key, display, conn, node, new session,
# given session ("" for none), kick channel, publish command, a node the caller found
# dead ("" for none).
# Returns {session, display}; {'taken', DISPLAY} when the name, or a look-alike (another
# key: no session moves it), is held, DISPLAY being the holder's; {'owner', NODE} when
# another node holds it exclusively and no valid session was given: the caller checks
# whether NODE is alive (its key lives in another slot) and, if not, calls again naming
# it dead ({'owner', NODE, DISPLAY}: the holder's display, for when NODE is alive).
CLAIM_NAME = (
    LUA_KINDS
    + """
local owner = redis.call('HMGET', KEYS[1], 'conn', 'node', 'session', 'display', 'key',
                         'shared')
if owner[6] then return {'taken', owner[4]} end  -- shared (auth)
if owner[1] == ARGV[3] then return {owner[3], owner[4]} end  -- already ours (a re-claim)
if not owner[1] or owner[2] == ARGV[9] then  -- free, or its node is dead (not reaped yet)
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'key', ARGV[1], 'conn', ARGV[3], 'node', ARGV[4],
             'session', ARGV[5], 'display', ARGV[2])
  -- A node only frozen hears this when it wakes: its connection lost the name (a
  -- look-alike's listens on another channel: the reaped mark tells that one).
  if owner[1] and (not owner[5] or owner[5] == ARGV[1]) then
    redis.call(ARGV[8], ARGV[7], KIND_KICK .. owner[1])
  end
  return {ARGV[5], ARGV[2]}
end
local alike = owner[5] and owner[5] ~= ARGV[1]
if alike or ARGV[6] == '' or ARGV[6] ~= owner[3] then
  if owner[2] ~= ARGV[4] and ARGV[9] == '' then return {'owner', owner[2], owner[4]} end
  return {'taken', owner[4]}
end
redis.call('HSET', KEYS[1], 'conn', ARGV[3], 'node', ARGV[4])
redis.call(ARGV[8], ARGV[7], KIND_KICK .. owner[1])
return {owner[3], owner[4]}
"""
)

# A name shared by the connections of an authenticated user: the hash holds 'shared',
# 'session', 'display' and one field 'c:<conn>' = node per connection.
# The same keys and arguments as CLAIM_NAME (the given session and the kick channel are
# unused). Returns {session, display}, {'taken', DISPLAY} when an exclusive owner holds
# the name or another user a look-alike, or {'owner', NODE} as CLAIM_NAME does.
CLAIM_SHARED = """
local held = redis.call('HMGET', KEYS[1], 'node', 'key', 'display')
local owner = held[1]
if owner then
  if owner ~= ARGV[9] then
    if ARGV[9] == '' then return {'owner', owner, held[3]} end
    return {'taken', held[3]}
  end
  redis.call('DEL', KEYS[1])  -- its node is dead: the reaper has not caught up yet
elseif held[2] and held[2] ~= ARGV[1] then
  return {'taken', held[3]}  -- a look-alike's connections share it
end
redis.call('HSETNX', KEYS[1], 'key', ARGV[1])
redis.call('HSETNX', KEYS[1], 'session', ARGV[5])
redis.call('HSETNX', KEYS[1], 'display', ARGV[2])
redis.call('HSET', KEYS[1], 'shared', '1', 'c:' .. ARGV[3], ARGV[4])
return redis.call('HMGET', KEYS[1], 'session', 'display')
"""

# Shared by RELEASE_NAME and REAP_NAME: drop a shared name's connections for which
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

# KEYS: name. ARGV: conn, node. Returns 1 when the node holds the name no more (the
# caller then takes it off the node's names index), else 0.
RELEASE_NAME = (
    _DROP_SHARED
    + """
if redis.call('HGET', KEYS[1], 'conn') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
elseif redis.call('HEXISTS', KEYS[1], 'c:' .. ARGV[1]) == 1 then
  local gone = function(conn, node) return conn == ARGV[1] end
  if drop_shared(KEYS[1], gone, ARGV[2]) then return 0 end
  return 1
end
return 0
"""
)

# KEYS: name. ARGV: dead node. Drops what the dead node held of the name.
REAP_NAME = (
    _DROP_SHARED
    + """
if redis.call('HGET', KEYS[1], 'node') == ARGV[1] then
  redis.call('DEL', KEYS[1])
elseif redis.call('HEXISTS', KEYS[1], 'shared') == 1 then
  drop_shared(KEYS[1], function(conn, holder) return holder == ARGV[1] end, '')
end
return 0
"""
)

# KEYS: recipient name, its DM budget. ARGV: recipient channel, JSON, publish command,
# recipient key, the budget's rate (DMs per second; 0: none) and burst. The budget is a
# token bucket (fields `tokens` and `at`, Redis's own TIME in ms, so every node counts
# alike) that expires once it would be full again. Returns 1 when published, 0 when the
# recipient is not online (the hash is absent, or a look-alike holds it), or minus the
# milliseconds until the budget has room again (nothing published). The sender's own
# copy is published by the caller: the sender's channel lives in another slot. events:
# ARGV[7] the DM's event JSON, stored in the recipient's stream once published.
DIRECT = (
    LUA_KINDS
    + """
if redis.call('HGET', KEYS[1], 'key') ~= ARGV[4] then return 0 end
local rate = tonumber(ARGV[5])
if rate > 0 then
  local burst = tonumber(ARGV[6])
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  local held = redis.call('HMGET', KEYS[2], 'tokens', 'at')
  local tokens = tonumber(held[1]) or burst
  local at = tonumber(held[2]) or now
  if now > at then tokens = math.min(burst, tokens + (now - at) * rate / 1000) end
  if tokens < 1 then return -math.max(1, math.ceil((1 - tokens) * 1000 / rate)) end
  redis.call('HSET', KEYS[2], 'tokens', tostring(tokens - 1), 'at', now)
  redis.call('PEXPIRE', KEYS[2], math.ceil(burst * 1000 / rate) + 1000)
end
redis.call(ARGV[3], ARGV[1], KIND_DIRECT .. ARGV[2])
if events then add_event('e', ARGV[7]) end
return 1
"""
)
