"""Key and channel names of the Redis broker (its Lua scripts: scripts/*.lua).

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
